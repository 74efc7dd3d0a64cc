//! `shop.order.v1.OrderService` over gRPC: each rpc reads the caller from the identity
//! metadata, calls the domain, and converts the result; errors map to statuses once, through
//! `ServiceError`.

use shop_platform::grpc::identity::Caller;
use shop_proto::pb::{common::PageResponse, order as pb};
use tonic::{Request, Response, Status};

use crate::{context::Context, convert, lifecycle, place, queries, upstream::Upstream};

/// The gRPC face of the order service.
#[derive(Clone, Debug)]
pub struct OrderApi {
    ctx: Context,
    upstream: Upstream,
}

impl OrderApi {
    pub(crate) fn new(ctx: Context, upstream: Upstream) -> Self {
        Self { ctx, upstream }
    }
}

#[tonic::async_trait]
impl pb::order_service_server::OrderService for OrderApi {
    async fn place_order(
        &self,
        request: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        let caller = Caller::required(&request)?;
        let record = place::place(&self.ctx, &self.upstream, &caller, request.into_inner()).await?;
        Ok(Response::new(pb::PlaceOrderResponse {
            order: Some(convert::order(&record)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let caller = Caller::required(&request)?;
        let page = queries::list(&self.ctx, &caller, request.get_ref()).await?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: page.orders.iter().map(convert::order).collect(),
            page: Some(PageResponse {
                next_cursor: page.next_cursor,
            }),
        }))
    }

    async fn get_order(&self, request: Request<pb::GetOrderRequest>) -> Result<Response<pb::GetOrderResponse>, Status> {
        let caller = Caller::required(&request)?;
        let record = queries::get(&self.ctx, &caller, &request.get_ref().id).await?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(convert::order(&record)),
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CancelOrderResponse>, Status> {
        let caller = Caller::required(&request)?;
        let record = lifecycle::cancel(&self.ctx, &caller, &request.get_ref().id).await?;
        Ok(Response::new(pb::CancelOrderResponse {
            order: Some(convert::order(&record)),
        }))
    }

    async fn return_order_item(
        &self,
        request: Request<pb::ReturnOrderItemRequest>,
    ) -> Result<Response<pb::ReturnOrderItemResponse>, Status> {
        let caller = Caller::required(&request)?;
        let body = request.get_ref();
        let record = lifecycle::return_item(&self.ctx, &caller, &body.order_id, &body.item_id).await?;
        Ok(Response::new(pb::ReturnOrderItemResponse {
            order: Some(convert::order(&record)),
        }))
    }
}
