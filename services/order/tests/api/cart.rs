//! A stand-in for the user service's CartService: carts held in memory, read with GetCart and
//! trimmed with RemoveCartLines, each call checked to carry the caller's identity (served as the
//! user service's mesh member, so the identity is the one the order service forwarded with its
//! proof). The rpcs the
//! order service never calls answer UNIMPLEMENTED.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use shop_platform::grpc::{identity::Caller, mesh::MeshIdentity, server::GrpcServerBuilder};
use shop_proto::pb::user::{
    AddCartItemRequest, AddCartItemResponse, Cart, CartItem, ClearCartRequest, ClearCartResponse, GetCartRequest,
    GetCartResponse, RemoveCartItemRequest, RemoveCartItemResponse, RemoveCartLinesRequest, RemoveCartLinesResponse,
    UpdateCartItemRequest, UpdateCartItemResponse,
    cart_service_server::{CartService, CartServiceServer},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

type Carts = Arc<Mutex<HashMap<Uuid, Vec<CartItem>>>>;
/// RemoveCartLines calls: whose cart, which line ids.
type Removals = Arc<Mutex<Vec<(Uuid, Vec<String>)>>>;

/// The running double.
#[derive(Clone)]
pub struct CartDouble {
    pub addr: SocketAddr,
    carts: Carts,
    removals: Removals,
}

impl CartDouble {
    /// Serves on a free loopback port until the test ends.
    pub async fn spawn(identity: MeshIdentity) -> Self {
        let mut double = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            carts: Carts::default(),
            removals: Arc::default(),
        };
        let server = GrpcServerBuilder::new(double.addr, identity)
            .add_service(CartServiceServer::new(double.clone()))
            .bind()
            .await
            .unwrap();
        double.addr = server.local_addr();
        tokio::spawn(server.serve(tokio_util::sync::CancellationToken::new()));
        double
    }

    /// Puts a line in `user`'s cart and returns its id.
    pub fn add(&self, user: Uuid, product: Uuid, quantity: u32) -> Uuid {
        let id = Uuid::now_v7();
        self.carts.lock().unwrap().entry(user).or_default().push(CartItem {
            id: id.to_string(),
            product_id: product.to_string(),
            quantity,
            ..Default::default()
        });
        id
    }

    /// The line ids in `user`'s cart.
    pub fn lines(&self, user: Uuid) -> Vec<String> {
        let carts = self.carts.lock().unwrap();
        carts
            .get(&user)
            .map(|items| items.iter().map(|item| item.id.clone()).collect())
            .unwrap_or_default()
    }

    /// The RemoveCartLines calls received: whose cart and which line ids.
    pub fn removals(&self) -> Vec<(Uuid, Vec<String>)> {
        self.removals.lock().unwrap().clone()
    }
}

fn caller<T>(request: &Request<T>) -> Result<Uuid, Status> {
    Caller::optional(request)
        .map(|caller| caller.user_id)
        .ok_or_else(|| Status::unauthenticated("no identity forwarded"))
}

#[tonic::async_trait]
impl CartService for CartDouble {
    async fn get_cart(&self, request: Request<GetCartRequest>) -> Result<Response<GetCartResponse>, Status> {
        let user = caller(&request)?;
        let items = self.carts.lock().unwrap().get(&user).cloned().unwrap_or_default();
        Ok(Response::new(GetCartResponse {
            cart: Some(Cart {
                items,
                ..Default::default()
            }),
        }))
    }

    async fn remove_cart_lines(
        &self,
        request: Request<RemoveCartLinesRequest>,
    ) -> Result<Response<RemoveCartLinesResponse>, Status> {
        let user = caller(&request)?;
        let ids = request.into_inner().item_ids;
        self.removals.lock().unwrap().push((user, ids.clone()));
        let mut carts = self.carts.lock().unwrap();
        let items = carts.entry(user).or_default();
        let before = items.len();
        items.retain(|item| !ids.contains(&item.id));
        Ok(Response::new(RemoveCartLinesResponse {
            removed: u32::try_from(before - items.len()).unwrap(),
        }))
    }

    async fn add_cart_item(&self, _: Request<AddCartItemRequest>) -> Result<Response<AddCartItemResponse>, Status> {
        Err(Status::unimplemented("not used by the order service"))
    }

    async fn update_cart_item(
        &self,
        _: Request<UpdateCartItemRequest>,
    ) -> Result<Response<UpdateCartItemResponse>, Status> {
        Err(Status::unimplemented("not used by the order service"))
    }

    async fn remove_cart_item(
        &self,
        _: Request<RemoveCartItemRequest>,
    ) -> Result<Response<RemoveCartItemResponse>, Status> {
        Err(Status::unimplemented("not used by the order service"))
    }

    async fn clear_cart(&self, _: Request<ClearCartRequest>) -> Result<Response<ClearCartResponse>, Status> {
        Err(Status::unimplemented("not used by the order service"))
    }
}
