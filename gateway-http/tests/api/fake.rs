//! Fake gRPC services on loopback that answer a few rpcs the way the contracts say and record
//! what the gateway sent them, so tests can check the translation in both directions. The
//! user service's part signs real EdDSA access tokens with a fixed test key. Like the real
//! services, they verify the gateway's mesh token (the gateway's key is fixed too) and see the
//! caller it asserts.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use shop_platform::grpc::{
    error::ERROR_CODE_METADATA,
    identity::{Caller, Role},
    mesh::{CATALOG, GATEWAY, Grants, MeshIdentity, MeshKey, ORDER, TOKEN_METADATA, TrustSet, USER},
};
use shop_proto::pb::{
    catalog::{self, catalog_service_server::CatalogServiceServer},
    common::{self, Money, PageResponse},
    order::{self, order_service_server::OrderServiceServer},
    user::{self, user_service_server::UserServiceServer, wishlist_service_server::WishlistServiceServer},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

/// The key id of the test signing key.
pub const KID: &str = "test-key";

/// The gateway's mesh identity in these tests.
pub fn gateway_identity() -> MeshIdentity {
    MeshIdentity::new(GATEWAY, mesh_key(), TrustSet::default(), &Grants::default()).unwrap()
}

fn mesh_key() -> MeshKey {
    MeshKey::parse("FRUVFRUVFRUVFRUVFRUVFRUVFRUVFRUVFRUVFRUVFRU").unwrap()
}

/// The services' identities, trusting the gateway's key, by the package of their methods.
fn service_identities() -> Vec<(&'static str, MeshIdentity)> {
    let mut trust = TrustSet::default();
    trust.insert(GATEWAY, mesh_key().public_key());
    [
        ("/shop.user.v1.", USER),
        ("/shop.catalog.v1.", CATALOG),
        ("/shop.order.v1.", ORDER),
    ]
    .into_iter()
    .map(|(prefix, name)| {
        let identity = MeshIdentity::new(name, MeshKey::generate(), trust.clone(), &Grants::default()).unwrap();
        (prefix, identity)
    })
    .collect()
}

/// The address whose verification mails the fake user service refuses as over its limit.
pub const LIMITED_EMAIL: &str = "limited@example.com";

/// What the gateway sent.
#[derive(Debug, Default)]
pub struct Seen {
    /// `x-shop-client-ip` of StartEmailVerification.
    pub client_ip: Option<String>,
    /// `x-request-id` of every call.
    pub request_ids: Vec<String>,
    /// The identity of every call that is not the gateway's own (keys, revocation).
    pub callers: Vec<Option<Caller>>,
    /// The last Logout.
    pub logout: Option<user::LogoutRequest>,
    /// The last PlaceOrder.
    pub placed: Option<order::PlaceOrderRequest>,
    /// The last ListProducts.
    pub listed: Option<catalog::ListProductsRequest>,
}

/// The fake services, all in one.
#[derive(Clone)]
pub struct Fake {
    /// The key the user service signs with and publishes under [`KID`]; [`Fake::rotate_key`]
    /// replaces it.
    key: Arc<Mutex<SigningKey>>,
    pub seen: Arc<Mutex<Seen>>,
    revoked: Arc<Mutex<HashSet<String>>>,
    /// The session of every token issued, by user; and the sessions that ended.
    sessions: Arc<Mutex<HashMap<Uuid, Vec<Uuid>>>>,
    ended_sessions: Arc<Mutex<HashSet<String>>>,
    /// Wishlist item ids by product id.
    wishlisted: Arc<Mutex<HashMap<String, String>>>,
    /// The catalog's products by id ([`Fake::add_product`]); any other id is not found.
    products: Arc<Mutex<HashMap<String, catalog::Product>>>,
    /// Catalog reads answered (GetProduct, GetStock, ListProducts).
    catalog_reads: Arc<std::sync::atomic::AtomicUsize>,
    /// How long each catalog read takes.
    catalog_delay: Arc<Mutex<std::time::Duration>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: Uuid,
    role: &'a str,
    sid: Uuid,
    jti: String,
    iat: i64,
    exp: i64,
}

impl Fake {
    /// Serves the fakes on a loopback port until the test's runtime ends.
    pub async fn start() -> (SocketAddr, Self) {
        let fake = Self {
            key: Arc::new(Mutex::new(SigningKey::from_bytes(&[7; 32]))),
            seen: Arc::default(),
            revoked: Arc::default(),
            sessions: Arc::default(),
            ended_sessions: Arc::default(),
            wishlisted: Arc::default(),
            products: Arc::default(),
            catalog_reads: Arc::default(),
            catalog_delay: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let identities = service_identities();
        // The verified caller goes in the request's extensions, as the platform's server does.
        let verify = tower::util::MapRequestLayer::new(move |mut request: http::Request<tonic::body::Body>| {
            let path = request.uri().path().to_owned();
            let token = request
                .headers()
                .get(TOKEN_METADATA)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            if let Some((_, identity)) = identities.iter().find(|(prefix, _)| path.starts_with(prefix))
                && let Ok(caller) = identity.verify(token.as_deref(), &path)
            {
                request.extensions_mut().insert(caller);
            }
            request
        });
        let server = tonic::transport::Server::builder()
            .layer(verify)
            .add_service(UserServiceServer::new(fake.clone()))
            .add_service(WishlistServiceServer::new(fake.clone()))
            .add_service(CatalogServiceServer::new(fake.clone()))
            .add_service(OrderServiceServer::new(fake.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        (addr, fake)
    }

    /// An access token for `user` with `role`, expiring `expires_in` seconds from now
    /// (negative: already expired), signed by `key` (the service's key when `None`).
    pub fn token_signed_by(&self, user: Uuid, role: Role, expires_in: i64, key: Option<&SigningKey>) -> String {
        let now = chrono::Utc::now().timestamp();
        let sid = Uuid::new_v4();
        self.sessions.lock().unwrap().entry(user).or_default().push(sid);
        let claims = Claims {
            sub: user,
            role: role.as_str(),
            sid,
            jti: Uuid::new_v4().to_string(),
            iat: now,
            exp: now + expires_in,
        };
        let der = match key {
            Some(key) => key.to_pkcs8_der(),
            None => self.key.lock().unwrap().to_pkcs8_der(),
        }
        .unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }

    /// A valid access token for `user` with `role`.
    pub fn token(&self, user: Uuid, role: Role) -> String {
        self.token_signed_by(user, role, 600, None)
    }

    /// The raw public key tokens verify with.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.lock().unwrap().verifying_key().to_bytes()
    }

    /// Replaces the signing key under the same [`KID`] (a rotation that reuses the id, or a
    /// compromised key withdrawn): tokens of the old key must stop verifying.
    pub fn rotate_key(&self) {
        let mut key = self.key.lock().unwrap();
        let mut bytes = key.to_bytes();
        bytes[0] = bytes[0].wrapping_add(1);
        *key = SigningKey::from_bytes(&bytes);
    }

    /// Adds a product of `seller`, shown to buyers or hidden; returns its id.
    pub fn add_product(&self, seller: Uuid, visible: bool) -> Uuid {
        let id = Uuid::new_v4();
        let mut product = product(&id.to_string());
        product.seller_id = seller.to_string();
        product.visible = visible;
        self.products.lock().unwrap().insert(id.to_string(), product);
        id
    }

    /// Catalog reads answered so far.
    pub fn catalog_reads(&self) -> usize {
        self.catalog_reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes each catalog read take `delay`.
    pub fn slow_catalog_reads(&self, delay: std::time::Duration) {
        *self.catalog_delay.lock().unwrap() = delay;
    }

    /// Counts a catalog read and takes its time.
    async fn catalog_read<T>(&self, request: &Request<T>) {
        self.record(request);
        self.catalog_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let delay = *self.catalog_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
    }

    /// The product `id` as `caller` may see it: hidden ones only by their seller and admins.
    fn visible_product(&self, id: &str, caller: Option<&Caller>) -> Result<catalog::Product, Status> {
        let product = self.products.lock().unwrap().get(id).cloned();
        let not_found = || with_code(Status::not_found("no such product"), "product_not_found");
        let product = product.ok_or_else(not_found)?;
        let privileged =
            caller.is_some_and(|caller| caller.role == Role::Admin || caller.user_id.to_string() == product.seller_id);
        if product.visible || privileged {
            Ok(product)
        } else {
            Err(not_found())
        }
    }

    /// Changes product `id` as its seller (or an admin) `caller`.
    fn change_product(
        &self,
        id: &str,
        caller: Option<Caller>,
        change: impl FnOnce(&mut catalog::Product),
    ) -> Result<catalog::Product, Status> {
        let caller = caller.ok_or_else(|| Status::unauthenticated("who?"))?;
        self.visible_product(id, Some(&caller))?;
        let mut products = self.products.lock().unwrap();
        let product = products.get_mut(id).ok_or_else(|| Status::not_found("gone"))?;
        change(product);
        Ok(product.clone())
    }

    fn record<T>(&self, request: &Request<T>) {
        let mut seen = self.seen.lock().unwrap();
        if let Some(id) = request.metadata().get("x-request-id") {
            seen.request_ids.push(id.to_str().unwrap().to_owned());
        }
        seen.callers.push(Caller::optional(request));
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    }
}

fn with_code(mut status: Status, code: &'static str) -> Status {
    status.metadata_mut().insert(ERROR_CODE_METADATA, code.parse().unwrap());
    status
}

/// A product as the catalog would return it.
pub fn product(id: &str) -> catalog::Product {
    catalog::Product {
        id: id.to_owned(),
        name: "Kettle".to_owned(),
        description: "Boils water.".to_owned(),
        price: Some(Money {
            amount: 12_900,
            currency: "KRW".to_owned(),
        }),
        stock: 3,
        visible: true,
        deleted: false,
        seller_id: Uuid::new_v4().to_string(),
        created_at: Some(now()),
        updated_at: Some(now()),
    }
}

/// Implements a service trait: the rpcs written out, and the rest answering UNIMPLEMENTED.
macro_rules! service {
    (
        impl $service:path => $fake:ty { $($implemented:tt)* }
        unimplemented { $($rpc:ident($request:ty) -> $response:ty;)* }
    ) => {
        #[tonic::async_trait]
        impl $service for $fake {
            $($implemented)*
            $(
                async fn $rpc(&self, _: Request<$request>) -> Result<Response<$response>, Status> {
                    Err(Status::unimplemented(stringify!($rpc)))
                }
            )*
        }
    };
}

service! {
    impl user::user_service_server::UserService => Fake {
        async fn start_email_verification(
            &self,
            request: Request<user::StartEmailVerificationRequest>,
        ) -> Result<Response<user::StartEmailVerificationResponse>, Status> {
            self.record(&request);
            if request.get_ref().email == LIMITED_EMAIL {
                return Err(with_code(Status::resource_exhausted("too many codes"), "too_many_requests"));
            }
            let ip = request.metadata().get("x-shop-client-ip").map(|ip| ip.to_str().unwrap().to_owned());
            self.seen.lock().unwrap().client_ip = ip;
            Ok(Response::new(user::StartEmailVerificationResponse {}))
        }

        async fn confirm_email_verification(
            &self,
            request: Request<user::ConfirmEmailVerificationRequest>,
        ) -> Result<Response<user::ConfirmEmailVerificationResponse>, Status> {
            self.record(&request);
            if request.get_ref().code != "123456" {
                return Err(with_code(Status::invalid_argument("wrong code"), "invalid_code"));
            }
            Ok(Response::new(user::ConfirmEmailVerificationResponse {
                verification_token: "vt".to_owned(),
                expires_in_seconds: 900,
            }))
        }

        async fn logout(&self, request: Request<user::LogoutRequest>) -> Result<Response<user::LogoutResponse>, Status> {
            self.record(&request);
            let request = request.into_inner();
            self.revoked.lock().unwrap().insert(request.access_token_id.clone());
            self.seen.lock().unwrap().logout = Some(request);
            Ok(Response::new(user::LogoutResponse {}))
        }

        async fn get_me(&self, request: Request<user::GetMeRequest>) -> Result<Response<user::GetMeResponse>, Status> {
            self.record(&request);
            let caller = Caller::optional(&request).ok_or_else(|| Status::unauthenticated("who?"))?;
            let role = match caller.role {
                Role::Customer => common::Role::Customer,
                Role::Seller => common::Role::Seller,
                Role::Admin => common::Role::Admin,
            };
            Ok(Response::new(user::GetMeResponse {
                user: Some(user::User {
                    id: caller.user_id.to_string(),
                    email: "ada@example.com".to_owned(),
                    name: "Ada".to_owned(),
                    phone: "010-0000-0000".to_owned(),
                    address: "1 Loop Road".to_owned(),
                    role: role.into(),
                    created_at: Some(now()),
                }),
            }))
        }

        async fn get_signing_keys(
            &self,
            _: Request<user::GetSigningKeysRequest>,
        ) -> Result<Response<user::GetSigningKeysResponse>, Status> {
            // A remote call takes a moment: requests arriving meanwhile must wait for it.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            Ok(Response::new(user::GetSigningKeysResponse {
                keys: vec![user::SigningKey {
                    kid: KID.to_owned(),
                    algorithm: "EdDSA".to_owned(),
                    public_key: self.public_key().to_vec(),
                    not_after: None,
                }],
            }))
        }

        async fn set_user_role(
            &self,
            request: Request<user::SetUserRoleRequest>,
        ) -> Result<Response<user::SetUserRoleResponse>, Status> {
            self.record(&request);
            let request = request.into_inner();
            let id: Uuid = request.user_id.parse().map_err(|_| Status::invalid_argument("user_id"))?;
            // Like the service: every session of the user ends.
            let sessions = self.sessions.lock().unwrap().get(&id).cloned().unwrap_or_default();
            self.ended_sessions
                .lock()
                .unwrap()
                .extend(sessions.iter().map(Uuid::to_string));
            Ok(Response::new(user::SetUserRoleResponse {
                user: Some(user::User {
                    id: id.to_string(),
                    email: "ada@example.com".to_owned(),
                    name: "Ada".to_owned(),
                    phone: "010-0000-0000".to_owned(),
                    address: "1 Loop Road".to_owned(),
                    role: request.role,
                    created_at: Some(now()),
                }),
            }))
        }

        async fn check_token_revoked(
            &self,
            request: Request<user::CheckTokenRevokedRequest>,
        ) -> Result<Response<user::CheckTokenRevokedResponse>, Status> {
            let request = request.get_ref();
            let revoked = self.revoked.lock().unwrap().contains(&request.jti)
                || self.ended_sessions.lock().unwrap().contains(&request.session_id);
            Ok(Response::new(user::CheckTokenRevokedResponse { revoked }))
        }
    }
    unimplemented {
        sign_up(user::SignUpRequest) -> user::SignUpResponse;
        login(user::LoginRequest) -> user::LoginResponse;
        refresh_session(user::RefreshSessionRequest) -> user::RefreshSessionResponse;
        update_profile(user::UpdateProfileRequest) -> user::UpdateProfileResponse;
        change_password(user::ChangePasswordRequest) -> user::ChangePasswordResponse;
        delete_account(user::DeleteAccountRequest) -> user::DeleteAccountResponse;
        list_users(user::ListUsersRequest) -> user::ListUsersResponse;
    }
}

service! {
    impl user::wishlist_service_server::WishlistService => Fake {
        async fn add_wishlist_item(
            &self,
            request: Request<user::AddWishlistItemRequest>,
        ) -> Result<Response<user::AddWishlistItemResponse>, Status> {
            self.record(&request);
            let request = request.into_inner();
            let (id, created) = {
                let mut wishlisted = self.wishlisted.lock().unwrap();
                let created = !wishlisted.contains_key(&request.product_id);
                let id = wishlisted
                    .entry(request.product_id.clone())
                    .or_insert_with(|| Uuid::new_v4().to_string());
                (id.clone(), created)
            };
            Ok(Response::new(user::AddWishlistItemResponse {
                item: Some(user::WishlistItem {
                    id,
                    product: Some(product(&request.product_id)),
                    product_id: request.product_id,
                    quantity: request.quantity.unwrap_or(1),
                    added_at: Some(now()),
                }),
                created,
            }))
        }

        async fn list_wishlist(
            &self,
            request: Request<user::ListWishlistRequest>,
        ) -> Result<Response<user::ListWishlistResponse>, Status> {
            self.record(&request);
            Ok(Response::new(user::ListWishlistResponse {
                items: vec![user::WishlistItem {
                    id: Uuid::new_v4().to_string(),
                    product_id: Uuid::new_v4().to_string(),
                    quantity: 2,
                    product: None,
                    added_at: Some(now()),
                }],
            }))
        }
    }
    unimplemented {
        update_wishlist_item(user::UpdateWishlistItemRequest) -> user::UpdateWishlistItemResponse;
        remove_wishlist_item(user::RemoveWishlistItemRequest) -> user::RemoveWishlistItemResponse;
    }
}

service! {
    impl catalog::catalog_service_server::CatalogService => Fake {
        async fn get_product(
            &self,
            request: Request<catalog::GetProductRequest>,
        ) -> Result<Response<catalog::GetProductResponse>, Status> {
            self.catalog_read(&request).await;
            let product = self.visible_product(&request.get_ref().id, Caller::optional(&request).as_ref())?;
            Ok(Response::new(catalog::GetProductResponse { product: Some(product) }))
        }

        async fn get_stock(
            &self,
            request: Request<catalog::GetStockRequest>,
        ) -> Result<Response<catalog::GetStockResponse>, Status> {
            self.catalog_read(&request).await;
            let id = &request.get_ref().product_id;
            let product = self.visible_product(id, Caller::optional(&request).as_ref())?;
            Ok(Response::new(catalog::GetStockResponse { product_id: product.id, stock: product.stock }))
        }

        async fn update_product(
            &self,
            request: Request<catalog::UpdateProductRequest>,
        ) -> Result<Response<catalog::UpdateProductResponse>, Status> {
            self.record(&request);
            let caller = Caller::optional(&request);
            let update = request.into_inner();
            let product = self.change_product(&update.id, caller, |product| {
                if let Some(name) = update.name {
                    product.name = name;
                }
                if let Some(visible) = update.visible {
                    product.visible = visible;
                }
            })?;
            Ok(Response::new(catalog::UpdateProductResponse { product: Some(product) }))
        }

        async fn set_stock(
            &self,
            request: Request<catalog::SetStockRequest>,
        ) -> Result<Response<catalog::SetStockResponse>, Status> {
            self.record(&request);
            let caller = Caller::optional(&request);
            let update = request.into_inner();
            let product = self.change_product(&update.product_id, caller, |product| product.stock = update.stock)?;
            Ok(Response::new(catalog::SetStockResponse { product_id: product.id, stock: product.stock }))
        }

        async fn list_products(
            &self,
            request: Request<catalog::ListProductsRequest>,
        ) -> Result<Response<catalog::ListProductsResponse>, Status> {
            self.catalog_read(&request).await;
            self.seen.lock().unwrap().listed = Some(request.into_inner());
            Ok(Response::new(catalog::ListProductsResponse {
                products: vec![product(&Uuid::new_v4().to_string())],
                page: Some(PageResponse {
                    next_cursor: "page-2".to_owned(),
                }),
            }))
        }
    }
    unimplemented {
        create_product(catalog::CreateProductRequest) -> catalog::CreateProductResponse;
        batch_get_products(catalog::BatchGetProductsRequest) -> catalog::BatchGetProductsResponse;
        delete_product(catalog::DeleteProductRequest) -> catalog::DeleteProductResponse;
    }
}

service! {
    impl order::order_service_server::OrderService => Fake {
        async fn place_order(
            &self,
            request: Request<order::PlaceOrderRequest>,
        ) -> Result<Response<order::PlaceOrderResponse>, Status> {
            self.record(&request);
            let caller = Caller::optional(&request).ok_or_else(|| Status::unauthenticated("who?"))?;
            let request = request.into_inner();
            let krw = |amount| Some(Money { amount, currency: "KRW".to_owned() });
            let order = order::Order {
                id: Uuid::new_v4().to_string(),
                user_id: caller.user_id.to_string(),
                status: order::OrderStatus::Pending.into(),
                items: vec![order::OrderItem {
                    id: Uuid::new_v4().to_string(),
                    product_id: Uuid::new_v4().to_string(),
                    name: "Kettle".to_owned(),
                    unit_price: krw(12_900),
                    quantity: 2,
                    status: order::OrderItemStatus::Ordered.into(),
                    shipped_at: None,
                    delivered_at: None,
                    returned_at: None,
                }],
                total: krw(25_800),
                payment: Some(order::Payment {
                    status: order::PaymentStatus::Pending.into(),
                    amount: krw(25_800),
                    refunded: krw(0),
                    captured_at: None,
                }),
                created_at: Some(now()),
                updated_at: Some(now()),
                status_reason: None,
            };
            self.seen.lock().unwrap().placed = Some(request);
            Ok(Response::new(order::PlaceOrderResponse { order: Some(order) }))
        }
    }
    unimplemented {
        list_orders(order::ListOrdersRequest) -> order::ListOrdersResponse;
        get_order(order::GetOrderRequest) -> order::GetOrderResponse;
        cancel_order(order::CancelOrderRequest) -> order::CancelOrderResponse;
        return_order_item(order::ReturnOrderItemRequest) -> order::ReturnOrderItemResponse;
    }
}
