//! `shop.user.v1.WishlistService` over the domain operations; the caller comes from the
//! identity metadata only.

use shop_platform::grpc::identity::Caller;
use shop_proto::pb::user::{self as pb, wishlist_service_server::WishlistService as WishlistServiceApi};
use tonic::{Request, Response, Status};

use super::timestamp;
use crate::{context::Context, wishlist::WishlistEntry};

/// The WishlistService implementation.
#[derive(Clone, Debug)]
pub struct WishlistApi {
    context: Context,
}

impl WishlistApi {
    /// Serves `context`.
    pub fn new(context: Context) -> Self {
        Self { context }
    }
}

fn item_to_pb(entry: WishlistEntry) -> pb::WishlistItem {
    pb::WishlistItem {
        id: entry.item.id.to_string(),
        product_id: entry.item.product_id.to_string(),
        quantity: u32::try_from(entry.item.quantity).unwrap_or(0),
        product: entry.product,
        added_at: Some(timestamp(entry.item.created_at)),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl WishlistServiceApi for WishlistApi {
    async fn list_wishlist(&self, request: Request<pb::ListWishlistRequest>) -> Reply<pb::ListWishlistResponse> {
        let caller = Caller::required(&request)?;
        let items = self.context.list_wishlist(&caller).await?;
        Ok(Response::new(pb::ListWishlistResponse {
            items: items.into_iter().map(item_to_pb).collect(),
        }))
    }

    async fn add_wishlist_item(
        &self,
        request: Request<pb::AddWishlistItemRequest>,
    ) -> Reply<pb::AddWishlistItemResponse> {
        let caller = Caller::required(&request)?;
        let request = request.into_inner();
        let (entry, created) = self
            .context
            .add_wishlist_item(&caller, &request.product_id, request.quantity)
            .await?;
        Ok(Response::new(pb::AddWishlistItemResponse {
            item: Some(item_to_pb(entry)),
            created,
        }))
    }

    async fn update_wishlist_item(
        &self,
        request: Request<pb::UpdateWishlistItemRequest>,
    ) -> Reply<pb::UpdateWishlistItemResponse> {
        let caller = Caller::required(&request)?;
        let request = request.into_inner();
        let entry = self
            .context
            .update_wishlist_item(&caller, &request.item_id, request.quantity)
            .await?;
        Ok(Response::new(pb::UpdateWishlistItemResponse {
            item: Some(item_to_pb(entry)),
        }))
    }

    async fn remove_wishlist_item(
        &self,
        request: Request<pb::RemoveWishlistItemRequest>,
    ) -> Reply<pb::RemoveWishlistItemResponse> {
        let caller = Caller::required(&request)?;
        self.context
            .remove_wishlist_item(&caller, &request.get_ref().item_id)
            .await?;
        Ok(Response::new(pb::RemoveWishlistItemResponse {}))
    }
}
