//! Service identity in the mesh: a server believes only what a mesh token proves. Forged
//! identity metadata, tokens for another service or method, expired tokens, unknown keys and
//! callers without a grant are refused; a valid token is accepted, and a user identity travels
//! from service to service only with the proof the gateway signed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use shop_platform::{
    config::MapEnv,
    grpc::{
        client::{Target, connect},
        identity::{Caller, Role},
        mesh::{
            CATALOG, GATEWAY, Grants, MeshCaller, MeshIdentity, MeshKey, MeshSettings, ORDER, Refusal, TOKEN_METADATA,
            TrustSet, USER, encode_public,
        },
    },
    testing,
};
use shop_proto::pb::user::{
    self as wishlist,
    wishlist_service_client::WishlistServiceClient,
    wishlist_service_server::{WishlistService, WishlistServiceServer},
};
use tokio_util::sync::DropGuard;
use tonic::{Code, Request, Response, Status, transport::Channel};
use uuid::Uuid;

const LIST: &str = "shop.user.v1.WishlistService/ListWishlist";

/// A wishlist whose `ListWishlist` answers who called: one item whose id is `"<member> <user id>
/// <role>"`; the other rpcs are not needed here.
#[derive(Debug, Default)]
struct WhoCalls;

#[tonic::async_trait]
impl WishlistService for WhoCalls {
    async fn list_wishlist(
        &self,
        request: Request<wishlist::ListWishlistRequest>,
    ) -> Result<Response<wishlist::ListWishlistResponse>, Status> {
        let member = request
            .extensions()
            .get::<MeshCaller>()
            .map(|caller| caller.service.clone())
            .unwrap_or_default();
        let user = Caller::optional(&request).map_or_else(|| "-".to_owned(), |u| format!("{} {}", u.user_id, u.role));
        Ok(Response::new(wishlist::ListWishlistResponse {
            items: vec![wishlist::WishlistItem {
                id: format!("{member} {user}"),
                ..Default::default()
            }],
        }))
    }
    async fn add_wishlist_item(
        &self,
        _: Request<wishlist::AddWishlistItemRequest>,
    ) -> Result<Response<wishlist::AddWishlistItemResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn update_wishlist_item(
        &self,
        _: Request<wishlist::UpdateWishlistItemRequest>,
    ) -> Result<Response<wishlist::UpdateWishlistItemResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn remove_wishlist_item(
        &self,
        _: Request<wishlist::RemoveWishlistItemRequest>,
    ) -> Result<Response<wishlist::RemoveWishlistItemResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// The gateway's key in these tests, and another one (an impostor's, or a rotated one).
const GATEWAY_SEED: [u8; 32] = [11; 32];
const OTHER_SEED: [u8; 32] = [12; 32];
const REPORTS_SEED: [u8; 32] = [13; 32];

fn key(seed: [u8; 32]) -> MeshKey {
    MeshKey::parse(&base64_seed(seed)).unwrap()
}

fn base64_seed(seed: [u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seed)
}

/// The user service's identity: it trusts the gateway's key and the `reports` team's key, and grants
/// `reports` the methods `grants` lists.
fn service_identity(grants: &str) -> MeshIdentity {
    let env = MapEnv::from_pairs([
        (
            "SHOP_MESH_TRUST",
            format!(
                "gateway={} reports={}",
                encode_public(&key(GATEWAY_SEED).public_key()),
                encode_public(&key(REPORTS_SEED).public_key())
            )
            .as_str(),
        ),
        ("SHOP_MESH_GRANTS", grants),
    ]);
    MeshIdentity::from_env(&env, USER).unwrap()
}

fn member(name: &str, seed: [u8; 32]) -> MeshIdentity {
    MeshIdentity::new(name, key(seed), TrustSet::default(), &Grants::default()).unwrap()
}

/// The user service's server; dropping it shuts it down.
struct Server {
    addr: SocketAddr,
    _stop: DropGuard,
}

async fn serve(identity: MeshIdentity) -> Server {
    shop_platform::testing::init_test_logging();
    let served = testing::server::serve(identity, |builder| {
        builder
            .add_service(WishlistServiceServer::new(WhoCalls))
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
    })
    .await;
    Server {
        addr: served.addr,
        _stop: served.shutdown.drop_guard(),
    }
}

/// A plain tonic client: what anyone who reaches the port can use.
async fn raw_client(addr: SocketAddr) -> WishlistServiceClient<Channel> {
    WishlistServiceClient::connect(format!("http://{addr}")).await.unwrap()
}

fn list() -> wishlist::ListWishlistRequest {
    wishlist::ListWishlistRequest {}
}

/// Calls ListWishlist with `metadata`; who the service saw, or the status.
async fn call(addr: SocketAddr, metadata: &[(&'static str, String)]) -> Result<String, Status> {
    let mut request = Request::new(list());
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    raw_client(addr)
        .await
        .list_wishlist(request)
        .await
        .map(|reply| reply.into_inner().items[0].id.clone())
}

/// A token signed with `seed`, with exactly `claims`.
fn raw_token(seed: [u8; 32], claims: &serde_json::Value) -> String {
    let der = SigningKey::from_bytes(&seed).to_pkcs8_der().unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn forged_admin() -> Vec<(&'static str, String)> {
    vec![
        ("x-shop-user-id", Uuid::new_v4().to_string()),
        ("x-shop-user-role", "admin".to_owned()),
    ]
}

#[tokio::test]
async fn forged_identity_metadata_without_a_token_is_unauthenticated() {
    let server = serve(service_identity("")).await;
    let status = call(server.addr, &forged_admin()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(
        status.metadata().get("x-shop-error-code").unwrap(),
        "mesh_unauthenticated"
    );
    let status = call(server.addr, &[]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn identity_metadata_beside_a_valid_token_is_ignored() {
    let server = serve(service_identity("")).await;
    let token = member(GATEWAY, GATEWAY_SEED).mint(USER, LIST, None).unwrap();
    let mut metadata = forged_admin();
    metadata.push((TOKEN_METADATA, token));
    assert_eq!(call(server.addr, &metadata).await.unwrap(), "gateway -");
}

#[tokio::test]
async fn a_valid_token_is_accepted_with_its_user() {
    let server = serve(service_identity("")).await;
    let user = Caller::new(Uuid::new_v4(), Role::Seller, None);
    // Through the platform's channel, as the services call each other.
    let channel = connect(
        &Target::parse(&format!("http://{}", server.addr)).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap()
    .signed_by(&member(GATEWAY, GATEWAY_SEED), USER);
    let mut request = Request::new(list());
    user.attach(&mut request);
    let reply = WishlistServiceClient::new(channel)
        .list_wishlist(request)
        .await
        .unwrap();
    assert_eq!(
        reply.into_inner().items[0].id.clone(),
        format!("gateway {} seller", user.user_id)
    );
}

#[tokio::test]
async fn tokens_for_another_service_or_method_are_refused() {
    let server = serve(service_identity("")).await;
    let gateway = member(GATEWAY, GATEWAY_SEED);
    for token in [
        gateway.mint(CATALOG, LIST, None).unwrap(),
        gateway
            .mint(USER, "shop.user.v1.WishlistService/RemoveWishlistItem", None)
            .unwrap(),
    ] {
        let status = call(server.addr, &[(TOKEN_METADATA, token)]).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
}

#[tokio::test]
async fn expired_and_overlong_tokens_are_refused() {
    let server = serve(service_identity("")).await;
    let expired = raw_token(
        GATEWAY_SEED,
        &json!({"iss": "gateway", "aud": "user", "mth": LIST, "iat": now() - 120, "exp": now() - 60}),
    );
    let status = call(server.addr, &[(TOKEN_METADATA, expired)]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
    // A member cannot mint itself a token for the day.
    let day = raw_token(
        GATEWAY_SEED,
        &json!({"iss": "gateway", "aud": "user", "mth": LIST, "iat": now(), "exp": now() + 86_400}),
    );
    let status = call(server.addr, &[(TOKEN_METADATA, day)]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn unknown_keys_and_callers_are_refused() {
    let server = serve(service_identity("")).await;
    for impostor in [member(GATEWAY, OTHER_SEED), member("stranger", OTHER_SEED)] {
        let token = impostor.mint(USER, LIST, None).unwrap();
        let status = call(server.addr, &[(TOKEN_METADATA, token)]).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    // An unsigned token naming the gateway.
    let unsigned = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        base64_url(&json!({"iss": "gateway", "aud": "user", "mth": LIST, "iat": now(), "exp": now() + 10}))
    );
    let status = call(server.addr, &[(TOKEN_METADATA, unsigned)]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

fn base64_url(value: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn trusted_callers_need_a_grant_for_the_method() {
    let reports = member("reports", REPORTS_SEED);
    let token = reports.mint(USER, LIST, None).unwrap();
    let server = serve(service_identity("")).await;
    let status = call(server.addr, &[(TOKEN_METADATA, token.clone())]).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.metadata().get("x-shop-error-code").unwrap(),
        "mesh_permission_denied"
    );

    let granted = serve(service_identity("reports=shop.user.v1.WishlistService/ListWishlist")).await;
    assert_eq!(
        call(granted.addr, &[(TOKEN_METADATA, token)]).await.unwrap(),
        "reports -"
    );
    // Granted methods only.
    let add = reports
        .mint(USER, "shop.user.v1.WishlistService/AddWishlistItem", None)
        .unwrap();
    let mut request = Request::new(wishlist::AddWishlistItemRequest::default());
    request.metadata_mut().insert(TOKEN_METADATA, add.parse().unwrap());
    let status = raw_client(granted.addr)
        .await
        .add_wishlist_item(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn only_user_asserting_members_may_name_a_user() {
    let server = serve(service_identity("reports=shop.user.v1.*")).await;
    let forged = raw_token(
        REPORTS_SEED,
        &json!({"iss": "reports", "aud": "user", "mth": LIST, "iat": now(), "exp": now() + 10,
                "usr": {"sub": Uuid::new_v4(), "role": "admin"}}),
    );
    let status = call(server.addr, &[(TOKEN_METADATA, forged)]).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let allowed = serve(service_identity("reports=shop.user.v1.*,as-user")).await;
    let user = Uuid::new_v4();
    let token = raw_token(
        REPORTS_SEED,
        &json!({"iss": "reports", "aud": "user", "mth": LIST, "iat": now(), "exp": now() + 10,
                "usr": {"sub": user, "role": "admin"}}),
    );
    assert_eq!(
        call(allowed.addr, &[(TOKEN_METADATA, token)]).await.unwrap(),
        format!("reports {user} admin")
    );
}

#[test]
fn a_user_travels_between_services_only_with_the_gateways_proof() {
    let mesh = MeshIdentity::ephemeral_mesh(&[GATEWAY, USER, CATALOG, ORDER], &MeshSettings::default()).unwrap();
    let user = Caller::new(Uuid::new_v4(), Role::Customer, Some(Uuid::new_v4()));
    let place = "shop.order.v1.OrderService/PlaceOrder";
    let cart_lines = "shop.user.v1.CartService/GetCartLines";
    let batch = "shop.catalog.v1.CatalogService/BatchGetProducts";

    // gateway → order → user → catalog, each forwarding what it received (the depth a chain may
    // reach; the shop's own calls are one hop shorter).
    let to_order = mesh[GATEWAY].mint(ORDER, place, Some(&user)).unwrap();
    let at_order = mesh[ORDER].verify(Some(&to_order), place).unwrap();
    assert_eq!(at_order.user.as_ref(), Some(&user));
    let to_user = mesh[ORDER].mint(USER, cart_lines, at_order.user.as_ref()).unwrap();
    let at_user = mesh[USER].verify(Some(&to_user), cart_lines).unwrap();
    assert_eq!((at_user.service.as_str(), at_user.user.as_ref()), (ORDER, Some(&user)));
    let to_catalog = mesh[USER].mint(CATALOG, batch, at_user.user.as_ref()).unwrap();
    let at_catalog = mesh[CATALOG].verify(Some(&to_catalog), batch).unwrap();
    assert_eq!(at_catalog.user.as_ref(), Some(&user));

    // A service cannot make a user up: without the proof, no user is sent.
    let invented = Caller::new(Uuid::new_v4(), Role::Admin, None);
    let token = mesh[ORDER].mint(USER, cart_lines, Some(&invented)).unwrap();
    assert_eq!(mesh[USER].verify(Some(&token), cart_lines).unwrap().user, None);

    // Nor reuse a proof addressed to another member: the gateway's token for the user service,
    // forwarded by the order service.
    let to_user_directly = mesh[GATEWAY].mint(USER, cart_lines, Some(&user)).unwrap();
    let stolen = mesh[USER].verify(Some(&to_user_directly), cart_lines).unwrap().user;
    let token = mesh[ORDER].mint(CATALOG, batch, stolen.as_ref()).unwrap();
    assert!(matches!(
        mesh[CATALOG].verify(Some(&token), batch),
        Err(Refusal::Unauthenticated(_))
    ));
}

#[test]
fn a_rotated_caller_key_verifies_until_it_is_removed() {
    let (old, new) = (key(GATEWAY_SEED), key(OTHER_SEED));
    let both = format!(
        "gateway={} gateway={}",
        encode_public(&old.public_key()),
        encode_public(&new.public_key())
    );
    let user = MeshIdentity::from_env(&MapEnv::from_pairs([("SHOP_MESH_TRUST", both.as_str())]), USER).unwrap();
    for seed in [GATEWAY_SEED, OTHER_SEED] {
        let token = member(GATEWAY, seed).mint(USER, LIST, None).unwrap();
        assert!(user.verify(Some(&token), LIST).is_ok());
    }
    let only_new = format!("gateway={}", encode_public(&new.public_key()));
    let user = MeshIdentity::from_env(&MapEnv::from_pairs([("SHOP_MESH_TRUST", only_new.as_str())]), USER).unwrap();
    let token = member(GATEWAY, GATEWAY_SEED).mint(USER, LIST, None).unwrap();
    assert!(matches!(
        user.verify(Some(&token), LIST),
        Err(Refusal::Unauthenticated(_))
    ));
}

#[test]
fn bad_mesh_settings_name_their_variable() {
    for (key, value) in [
        ("SHOP_MESH_KEY", "short"),
        ("SHOP_MESH_TRUST", "gateway"),
        ("SHOP_MESH_GRANTS", "reports=ListOrders"),
        ("SHOP_MESH_TOKEN_TTL", "1h"),
    ] {
        let error = MeshIdentity::from_env(&MapEnv::from_pairs([(key, value)]), CATALOG).unwrap_err();
        assert_eq!(error.key, key, "{value}");
    }
}
