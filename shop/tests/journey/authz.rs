//! The authorization matrix: every owned resource against every kind of caller: its owner,
//! another customer, a seller, an admin, nobody (no token), and a forged internal caller (a
//! process that reaches a service's gRPC port and claims to be the admin in the identity
//! metadata, or signs with a key of its own). Each cell is the answer the contract names; the
//! forged caller is refused everywhere and changes nothing. Both shapes: separate binaries
//! and the one-process binary (whose loopback ports any local user reaches).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};
use shop_platform::grpc::mesh::{
    CATALOG, GATEWAY, Grants, MeshIdentity, MeshKey, ORDER, TOKEN_METADATA, TrustSet, USER,
};
use shop_proto::pb::{
    catalog::{CreateProductRequest, UpdateProductRequest, catalog_service_client::CatalogServiceClient},
    common::{Money, PageRequest, Role as PbRole},
    order::{CancelOrderRequest, GetOrderRequest, ListOrdersRequest, order_service_client::OrderServiceClient},
    user::{
        GetCartRequest, ListUsersRequest, ListWishlistRequest, SetUserRoleRequest,
        cart_service_client::CartServiceClient, user_service_client::UserServiceClient,
        wishlist_service_client::WishlistServiceClient,
    },
};
use tonic::{Code, Request, transport::Channel};

use crate::{
    abuse::belongings,
    api::{Api, Call},
    journey::{Session, create_product, log_in, sign_up},
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack},
};

/// Who calls, through the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Owner,
    OtherCustomer,
    Seller,
    Admin,
    Anonymous,
}

const EVERYONE: [Who; 5] = [Who::Owner, Who::OtherCustomer, Who::Seller, Who::Admin, Who::Anonymous];

struct People {
    alice: Session,
    bob: Session,
    seller: Session,
    admin: Session,
}

impl People {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Owner => Some(&self.alice.access),
            Who::OtherCustomer => Some(&self.bob.access),
            Who::Seller => Some(&self.seller.access),
            Who::Admin => Some(&self.admin.access),
            Who::Anonymous => None,
        }
    }
}

/// Alice's things, and the seller's product.
struct Owned {
    product: String,
    wish: String,
    line: String,
    order: String,
}

async fn people(stack: &Stack) -> People {
    let api = &stack.api;
    let admin = log_in(api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let alice = sign_up(&stack.api, &stack.mail, "alice").await;
    let bob = sign_up(&stack.api, &stack.mail, "bob").await;
    let seller = sign_up(&stack.api, &stack.mail, "seller").await;
    api.put(&format!("/users/{}/role", seller.user_id), &json!({ "role": "seller" }))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    // The role is in the next token.
    let seller = log_in(api, &seller.email, &seller.password).await;
    People {
        alice,
        bob,
        seller,
        admin,
    }
}

async fn owned(api: &Api, people: &People) -> Owned {
    let product = create_product(api, &people.seller, "Tin whistle", "In D", 2_000, 10).await;
    let hers = belongings(api, &people.alice, &product).await;
    Owned {
        product,
        wish: hers.wish,
        line: hers.line,
        order: hers.order,
    }
}

/// `call` made by `who`.
fn by<'a>(call: Call<'a>, people: &'a People, who: Who) -> Call<'a> {
    match people.token(who) {
        Some(token) => call.token(token),
        None => call,
    }
}

/// One request of the matrix and the status each caller gets.
struct Cell {
    method: Method,
    path: String,
    body: Option<Value>,
    expected: [(Who, u16); 5],
}

fn cell(method: Method, path: String, body: Option<Value>, expected: [u16; 5]) -> Cell {
    let mut pairs = [(Who::Owner, 0); 5];
    for (pair, (who, status)) in pairs.iter_mut().zip(EVERYONE.into_iter().zip(expected)) {
        *pair = (who, status);
    }
    Cell {
        method,
        path,
        body,
        expected: pairs,
    }
}

async fn through_the_gateway(stack: &Stack, people: &People, owned: &Owned) {
    let api = &stack.api;
    let (wish, line, order, product) = (&owned.wish, &owned.line, &owned.order, &owned.product);
    let alice = &people.alice.user_id;
    //                                                   owner other seller admin anonymous
    let matrix = [
        cell(
            Method::PATCH,
            format!("/wishlist/{wish}"),
            Some(json!({"quantity": 3})),
            [200, 404, 404, 404, 401],
        ),
        cell(
            Method::PATCH,
            format!("/cart/items/{line}"),
            Some(json!({"quantity": 3})),
            [200, 404, 404, 404, 401],
        ),
        cell(Method::GET, format!("/orders/{order}"), None, [200, 404, 404, 200, 401]),
        cell(
            Method::GET,
            format!("/orders?user_id={alice}"),
            None,
            [200, 403, 403, 200, 401],
        ),
        cell(Method::GET, "/users".to_owned(), None, [403, 403, 403, 200, 401]),
        cell(
            Method::GET,
            format!("/products/{product}/stock"),
            None,
            [200, 200, 200, 200, 200],
        ),
        // The product belongs to the seller: here "owner" is the customer Alice.
        cell(
            Method::PATCH,
            format!("/products/{product}"),
            Some(json!({"price": 2_500})),
            [403, 403, 200, 200, 401],
        ),
        cell(
            Method::PUT,
            format!("/products/{product}/stock"),
            Some(json!({"stock": 9})),
            [403, 403, 200, 200, 401],
        ),
    ];
    for cell in &matrix {
        for (who, status) in cell.expected {
            let mut call = api.call(cell.method.clone(), &cell.path);
            if let Some(body) = &cell.body {
                call = call.json(body);
            }
            let reply = by(call, people, who).send().await;
            assert_eq!(
                reply.status, status,
                "{}: {who:?} {} {}: {reply:?}",
                stack.shape, cell.method, cell.path
            );
        }
    }
    // Changing what is someone else's: refused for everyone but the owner (and the admin where
    // the contract allows it), checked last because they change things.
    for who in [Who::OtherCustomer, Who::Seller, Who::Anonymous] {
        let expected = if who == Who::Anonymous { 401 } else { 404 };
        for (method, path) in [
            (Method::DELETE, format!("/wishlist/{wish}")),
            (Method::DELETE, format!("/cart/items/{line}")),
            (Method::POST, format!("/orders/{order}/cancel")),
        ] {
            let reply = by(api.call(method.clone(), &path), people, who).send().await;
            assert_eq!(
                reply.status, expected,
                "{}: {who:?} {method} {path}: {reply:?}",
                stack.shape
            );
        }
    }
    for who in [Who::OtherCustomer, Who::Seller, Who::Anonymous] {
        let mut call = api.put(
            &format!("/users/{}/role", people.bob.user_id),
            &json!({ "role": "admin" }),
        );
        if let Some(token) = people.token(who) {
            call = call.token(token);
        }
        let expected = if who == Who::Anonymous { 401 } else { 403 };
        assert_eq!(
            call.send().await.status,
            expected,
            "{}: {who:?} sets a role",
            stack.shape
        );
    }
}

fn grpc_addr(stack: &Stack, service: &str) -> String {
    let (_, addr) = stack.grpc.iter().find(|(name, _)| *name == service).unwrap();
    format!("http://{addr}")
}

/// A request claiming to come from `user` as an admin, the way identities travelled before
/// they had to be proven, with `token` (if any) as its mesh token.
fn forged<T>(message: T, user: &str, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-shop-user-id", user.parse().unwrap());
    metadata.insert("x-shop-user-role", "admin".parse().unwrap());
    if let Some(token) = token {
        metadata.insert(TOKEN_METADATA, token.parse().unwrap());
    }
    request
}

/// Every way in a forged caller tries, with no token and with a token it signed itself as the
/// gateway; each must be UNAUTHENTICATED.
async fn forged_internal_caller(stack: &Stack, people: &People, owned: &Owned) {
    let impostor = MeshIdentity::new(GATEWAY, MeshKey::generate(), TrustSet::default(), &Grants::default()).unwrap();
    let admin_id = people.admin.user_id.as_str();
    let alice_id = people.alice.user_id.as_str();
    let channel = |service: &str| Channel::from_shared(grpc_addr(stack, service)).unwrap().connect_lazy();
    let (users, catalog, orders) = (channel(USER), channel(CATALOG), channel(ORDER));
    for self_signed in [false, true] {
        let token = |audience: &str, method: &str| self_signed.then(|| impostor.mint(audience, method, None).unwrap());
        // (method, outcome) of one forged call: `$client.$rpc($message)` claiming to be `$user`.
        macro_rules! forged_call {
            ($client:expr, $rpc:ident, $audience:expr, $method:literal, $user:expr, $message:expr) => {
                (
                    $method,
                    $client
                        .$rpc(forged($message, $user, token($audience, $method).as_deref()))
                        .await
                        .map(drop),
                )
            };
        }
        let page = || Some(PageRequest::default());
        let price = || {
            Some(Money {
                amount: 1,
                currency: "KRW".to_owned(),
            })
        };
        let refusals = [
            forged_call!(
                UserServiceClient::new(users.clone()),
                list_users,
                USER,
                "shop.user.v1.UserService/ListUsers",
                admin_id,
                ListUsersRequest { page: page() }
            ),
            forged_call!(
                UserServiceClient::new(users.clone()),
                set_user_role,
                USER,
                "shop.user.v1.UserService/SetUserRole",
                admin_id,
                SetUserRoleRequest {
                    user_id: people.bob.user_id.clone(),
                    role: PbRole::Admin.into(),
                }
            ),
            forged_call!(
                CartServiceClient::new(users.clone()),
                get_cart,
                USER,
                "shop.user.v1.CartService/GetCart",
                alice_id,
                GetCartRequest {}
            ),
            forged_call!(
                WishlistServiceClient::new(users.clone()),
                list_wishlist,
                USER,
                "shop.user.v1.WishlistService/ListWishlist",
                alice_id,
                ListWishlistRequest {}
            ),
            forged_call!(
                OrderServiceClient::new(orders.clone()),
                list_orders,
                ORDER,
                "shop.order.v1.OrderService/ListOrders",
                admin_id,
                ListOrdersRequest::default()
            ),
            forged_call!(
                OrderServiceClient::new(orders.clone()),
                get_order,
                ORDER,
                "shop.order.v1.OrderService/GetOrder",
                alice_id,
                GetOrderRequest {
                    id: owned.order.clone()
                }
            ),
            forged_call!(
                OrderServiceClient::new(orders.clone()),
                cancel_order,
                ORDER,
                "shop.order.v1.OrderService/CancelOrder",
                admin_id,
                CancelOrderRequest {
                    id: owned.order.clone()
                }
            ),
            forged_call!(
                CatalogServiceClient::new(catalog.clone()),
                create_product,
                CATALOG,
                "shop.catalog.v1.CatalogService/CreateProduct",
                &uuid::Uuid::new_v4().to_string(),
                CreateProductRequest {
                    name: "Counterfeit".to_owned(),
                    description: "Sold by nobody".to_owned(),
                    price: price(),
                    stock: 1,
                    visible: None,
                }
            ),
            forged_call!(
                CatalogServiceClient::new(catalog.clone()),
                update_product,
                CATALOG,
                "shop.catalog.v1.CatalogService/UpdateProduct",
                admin_id,
                UpdateProductRequest {
                    id: owned.product.clone(),
                    price: price(),
                    ..Default::default()
                }
            ),
        ];
        for (method, outcome) in refusals {
            let status = outcome.expect_err(method);
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{}: {method} (self-signed token: {self_signed}): {status:?}",
                stack.shape
            );
        }
    }
    // Nothing changed: Bob is no admin, Alice's order stands, the price is the seller's.
    let api = &stack.api;
    let bob = log_in(api, &people.bob.email, &people.bob.password).await;
    let me = api.get("/users/me").token(&bob.access).send().await.expect(200);
    assert_eq!(me["role"], "customer", "{}", stack.shape);
    let order = api
        .get(&format!("/orders/{}", owned.order))
        .token(&people.alice.access)
        .send()
        .await
        .expect(200);
    assert_ne!(order["status"], "cancelled", "{}: {order}", stack.shape);
    let product = api
        .get(&format!("/products/{}", owned.product))
        .send()
        .await
        .expect(200);
    assert_eq!(product["price"], 2_500, "{}: {product}", stack.shape);
    let products = api.get("/products?q=Counterfeit").send().await.expect(200);
    assert_eq!(products["items"], json!([]), "{}", stack.shape);
}

async fn matrix(stack: Stack) {
    let people = people(&stack).await;
    let owned = owned(&stack.api, &people).await;
    through_the_gateway(&stack, &people, &owned).await;
    forged_internal_caller(&stack, &people, &owned).await;
}

#[tokio::test]
async fn authorization_matrix_separate_services() {
    matrix(Stack::services(&[]).await).await;
}

#[tokio::test]
async fn authorization_matrix_one_process() {
    matrix(Stack::one_process().await).await;
}
