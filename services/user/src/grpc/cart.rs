//! `shop.user.v1.CartService` over the domain operations; the caller comes from the identity
//! metadata only.

use shop_platform::grpc::identity::Caller;
use shop_proto::pb::user::{self as pb, cart_service_server::CartService as CartServiceApi};
use tonic::{Request, Response, Status};

use super::timestamp;
use crate::{context::Context, pricing::Line};

/// The CartService implementation.
#[derive(Clone, Debug)]
pub struct CartApi {
    context: Context,
}

impl CartApi {
    /// Serves `context`.
    pub fn new(context: Context) -> Self {
        Self { context }
    }
}

fn line_to_pb(line: Line) -> pb::CartItem {
    pb::CartItem {
        id: line.item.id.to_string(),
        product_id: line.item.product_id.to_string(),
        quantity: u32::try_from(line.item.quantity).unwrap_or(0),
        product: line.product,
        line_total: line.line_total,
        added_at: Some(timestamp(line.item.created_at)),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CartServiceApi for CartApi {
    async fn get_cart(&self, request: Request<pb::GetCartRequest>) -> Reply<pb::GetCartResponse> {
        let caller = Caller::required(&request)?;
        let cart = self.context.cart(&caller).await?;
        Ok(Response::new(pb::GetCartResponse {
            cart: Some(pb::Cart {
                items: cart.lines.into_iter().map(line_to_pb).collect(),
                total: Some(cart.totals.total),
                other_totals: cart.totals.others,
            }),
        }))
    }

    async fn add_cart_item(&self, request: Request<pb::AddCartItemRequest>) -> Reply<pb::AddCartItemResponse> {
        let caller = Caller::required(&request)?;
        let request = request.into_inner();
        let (line, created) = self
            .context
            .add_cart_item(&caller, &request.product_id, request.quantity)
            .await?;
        Ok(Response::new(pb::AddCartItemResponse {
            item: Some(line_to_pb(line)),
            created,
        }))
    }

    async fn update_cart_item(&self, request: Request<pb::UpdateCartItemRequest>) -> Reply<pb::UpdateCartItemResponse> {
        let caller = Caller::required(&request)?;
        let request = request.into_inner();
        let line = self
            .context
            .update_cart_item(&caller, &request.item_id, request.quantity)
            .await?;
        Ok(Response::new(pb::UpdateCartItemResponse {
            item: Some(line_to_pb(line)),
        }))
    }

    async fn remove_cart_item(&self, request: Request<pb::RemoveCartItemRequest>) -> Reply<pb::RemoveCartItemResponse> {
        let caller = Caller::required(&request)?;
        self.context
            .remove_cart_item(&caller, &request.get_ref().item_id)
            .await?;
        Ok(Response::new(pb::RemoveCartItemResponse {}))
    }

    async fn clear_cart(&self, request: Request<pb::ClearCartRequest>) -> Reply<pb::ClearCartResponse> {
        let caller = Caller::required(&request)?;
        self.context.clear_cart(&caller).await?;
        Ok(Response::new(pb::ClearCartResponse {}))
    }

    async fn remove_cart_lines(
        &self,
        request: Request<pb::RemoveCartLinesRequest>,
    ) -> Reply<pb::RemoveCartLinesResponse> {
        let caller = Caller::required(&request)?;
        let request = request.get_ref();
        let removed = self
            .context
            .remove_cart_lines(&caller, &request.product_ids, &request.item_ids)
            .await?;
        Ok(Response::new(pb::RemoveCartLinesResponse { removed }))
    }

    async fn get_cart_lines(&self, request: Request<pb::GetCartLinesRequest>) -> Reply<pb::GetCartLinesResponse> {
        let caller = Caller::required(&request)?;
        let lines = self.context.cart_lines(&caller).await?;
        Ok(Response::new(pb::GetCartLinesResponse {
            lines: lines
                .into_iter()
                .map(|item| pb::CartLine {
                    id: item.id.to_string(),
                    product_id: item.product_id.to_string(),
                    quantity: u32::try_from(item.quantity).unwrap_or(0),
                })
                .collect(),
        }))
    }
}
