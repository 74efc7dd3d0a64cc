//! The user service through the platform's harness (`shop_platform::testing::service`): port 0,
//! its own PostgreSQL database and cache prefix in Redis; beside it a real SMTP server (aiosmtpd,
//! `shop_platform::testing::smtp`) on its own port, and a catalog double serving a fixed product table
//! over gRPC; typed clients and journeys on top.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use shop_platform::{
    grpc::{
        client::GrpcChannel,
        error::machine_code,
        identity::{Caller, Role},
        mesh::CATALOG,
        server::GrpcServerBuilder,
    },
    queue::WorkQueue,
    testing::{
        service::{TestService, TestSetup},
        unique_name,
    },
};
use shop_proto::pb::{
    catalog::catalog_service_server::CatalogServiceServer,
    common::PageRequest,
    user::{
        self as pb, TokenPair, cart_service_client::CartServiceClient, user_service_client::UserServiceClient,
        wishlist_service_client::WishlistServiceClient,
    },
};
use shop_user::UserService;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::{Request, Status};

pub use shop_platform::testing::smtp::SmtpSink;

pub use crate::fake_catalog::FakeCatalog;

/// The password of test accounts.
pub const PASSWORD: &str = "corr3ct-Horse!";

/// A fresh address nobody else uses.
pub fn unique_email() -> String {
    format!("{}@example.com", unique_name("user"))
}

/// The machine code of a failed call.
pub fn code(status: &Status) -> &str {
    machine_code(status).unwrap_or("")
}

/// `message` with `caller`'s identity metadata, as the gateway would send it.
pub fn as_caller<T>(caller: &Caller, message: T) -> Request<T> {
    let mut request = Request::new(message);
    caller.attach(&mut request);
    request
}

/// A signed-in test user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// The address.
    pub email: String,
    /// The password.
    pub password: String,
    /// The latest token pair.
    pub tokens: TokenPair,
    /// The identity the gateway would forward for `tokens`.
    pub caller: Caller,
    /// The access token's `jti`.
    pub jti: String,
    /// The access token's `exp`.
    pub exp: i64,
}

/// The running service and its peers.
pub struct TestApp {
    /// UserService client.
    pub users: UserServiceClient<GrpcChannel>,
    /// WishlistService client.
    pub wishlist: WishlistServiceClient<GrpcChannel>,
    /// CartService client.
    pub cart: CartServiceClient<GrpcChannel>,
    /// The SMTP server the service mails through.
    pub smtp: SmtpSink,
    /// The catalog double.
    pub catalog: FakeCatalog,
    service: TestService<UserService>,
    /// Stops the catalog double with the test.
    _catalog_server: DropGuard,
}

/// The service with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// The service with some settings (environment variables of [`UserConfig`]) overridden.
///
/// [`UserConfig`]: shop_user::UserConfig
pub async fn spawn_app_with(settings: &[(&str, &str)]) -> TestApp {
    spawn_on(TestSetup::new(UserService::db), settings).await
}

/// The service on the one-process run's embedded backends: a SQLite file and the in-process
/// cache.
pub async fn spawn_embedded_app(settings: &[(&str, &str)]) -> TestApp {
    spawn_on(TestSetup::new(UserService::db).embedded(), settings).await
}

impl TestApp {
    /// Another replica of the service on the same database, whose cache knows nothing (as
    /// after a cache restart without persistence): a key prefix of its own.
    pub async fn replica_with_empty_cache(&self) -> TestApp {
        let database = self.service.var("DATABASE_URL").unwrap();
        spawn_on(TestSetup::new(UserService::db).env("DATABASE_URL", database), &[]).await
    }
}

/// The service of `setup` mailing through a fresh SMTP server and pricing through a fresh
/// catalog double, with `settings` on top.
async fn spawn_on(setup: TestSetup<UserService>, settings: &[(&str, &str)]) -> TestApp {
    let catalog = FakeCatalog::default();
    let catalog_server = GrpcServerBuilder::new("127.0.0.1:0".parse().unwrap(), setup.mesh().identity(CATALOG))
        .add_service(CatalogServiceServer::new(catalog.clone()))
        .bind()
        .await
        .unwrap();
    let catalog_addr = catalog_server.local_addr();
    let stop_catalog = CancellationToken::new();
    tokio::spawn(catalog_server.serve(stop_catalog.clone()));

    let smtp = SmtpSink::start().await;
    let service = setup
        .env("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port))
        .env("SHOP_CATALOG_TARGET", format!("http://{catalog_addr}"))
        .envs(settings.iter().copied())
        .start()
        .await;

    // The tests call as the gateway does.
    let channel = service.channel().await;
    TestApp {
        users: UserServiceClient::new(channel.clone()),
        wishlist: WishlistServiceClient::new(channel.clone()),
        cart: CartServiceClient::new(channel),
        smtp,
        catalog,
        service,
        _catalog_server: stop_catalog.drop_guard(),
    }
}

impl TestApp {
    /// The work queue the service consumes (the in-process one of the test), and the name of its
    /// queue of placed orders.
    pub fn placed_queue(&self) -> (std::sync::Arc<dyn WorkQueue>, String) {
        let name = self.service.var("SHOP_ORDER_PLACED_QUEUE").unwrap_or("orders.placed");
        (std::sync::Arc::clone(&self.service.backends().queue), name.to_owned())
    }

    /// Asks for a code for `email` and reads it out of the SMTP server.
    pub async fn code_for(&self, email: &str) -> String {
        self.users
            .clone()
            .start_email_verification(pb::StartEmailVerificationRequest {
                email: email.to_owned(),
            })
            .await
            .expect("a code is sent");
        self.smtp.next_mail_to(email).await.code()
    }

    /// Proves `email` and returns the verification token.
    pub async fn verification_token(&self, email: &str) -> String {
        let code = self.code_for(email).await;
        self.users
            .clone()
            .confirm_email_verification(pb::ConfirmEmailVerificationRequest {
                email: email.to_owned(),
                code,
            })
            .await
            .expect("the code is right")
            .into_inner()
            .verification_token
    }

    /// A sign-up request with valid details.
    pub fn sign_up_request(token: &str, email: &str) -> pb::SignUpRequest {
        pb::SignUpRequest {
            verification_token: token.to_owned(),
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            name: "Ada Lovelace".to_owned(),
            phone: "+82 10 1234 5678".to_owned(),
            address: "1 Analytical Engine Street, Seoul".to_owned(),
        }
    }

    /// Signs `email` up through the whole journey; returns the new account.
    pub async fn sign_up(&self, email: &str) -> pb::User {
        let token = self.verification_token(email).await;
        self.users
            .clone()
            .sign_up(Self::sign_up_request(&token, email))
            .await
            .expect("sign-up succeeds")
            .into_inner()
            .user
            .expect("a user")
    }

    /// Signs in; returns the pair.
    pub async fn login(&self, email: &str, password: &str) -> Result<TokenPair, Status> {
        self.users
            .clone()
            .login(pb::LoginRequest {
                email: email.to_owned(),
                password: password.to_owned(),
            })
            .await
            .map(|reply| reply.into_inner().tokens.expect("tokens"))
    }

    /// A new account, signed in.
    pub async fn new_user(&self) -> TestUser {
        let email = unique_email();
        self.sign_up(&email).await;
        let tokens = self.login(&email, PASSWORD).await.expect("sign-in succeeds");
        self.user_with(email, PASSWORD.to_owned(), tokens).await
    }

    /// The test user `tokens` belong to, as the gateway would verify them: with the keys from
    /// GetSigningKeys, the algorithm pinned to EdDSA and the key named by `kid`.
    pub async fn user_with(&self, email: String, password: String, tokens: TokenPair) -> TestUser {
        let claims = self.verify(&tokens.access_token).await;
        let caller = Caller::new(
            claims["sub"].as_str().unwrap().parse().unwrap(),
            claims["role"].as_str().unwrap().parse::<Role>().unwrap(),
            Some(claims["sid"].as_str().unwrap().parse().unwrap()),
        );
        TestUser {
            email,
            password,
            caller,
            jti: claims["jti"].as_str().unwrap().to_owned(),
            exp: claims["exp"].as_i64().unwrap(),
            tokens,
        }
    }

    /// Verifies an access token offline and returns its claims.
    pub async fn verify(&self, token: &str) -> serde_json::Value {
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        let kid = header.kid.expect("a kid");
        let keys = self.signing_keys().await;
        let key = keys.iter().find(|key| key.kid == kid).expect("the kid is published");
        assert_eq!(key.algorithm, "EdDSA");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_ed_der(&key.public_key), &validation)
            .expect("the token verifies")
            .claims
    }

    /// Whether CheckTokenRevoked refuses `user`'s current access token.
    pub async fn is_revoked(&self, user: &TestUser) -> bool {
        self.users
            .clone()
            .check_token_revoked(pb::CheckTokenRevokedRequest {
                jti: user.jti.clone(),
                session_id: user.caller.session_id.map(|s| s.to_string()).unwrap_or_default(),
            })
            .await
            .unwrap()
            .into_inner()
            .revoked
    }

    /// The keys the service publishes for verifying its access tokens.
    pub async fn signing_keys(&self) -> Vec<pb::SigningKey> {
        self.users
            .clone()
            .get_signing_keys(pb::GetSigningKeysRequest {})
            .await
            .unwrap()
            .into_inner()
            .keys
    }

    /// Every account's email as `admin` lists them, following the cursors through pages of
    /// `limit`.
    pub async fn all_user_emails(&self, admin: &Caller, limit: u32) -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .users
                .clone()
                .list_users(as_caller(
                    admin,
                    pb::ListUsersRequest {
                        page: Some(PageRequest { limit, cursor }),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            seen.extend(page.users.into_iter().map(|user| user.email));
            cursor = page.page.unwrap().next_cursor;
            if cursor.is_empty() {
                return seen;
            }
        }
    }

    /// The caller's account.
    pub async fn me(&self, caller: &Caller) -> Result<pb::User, Status> {
        self.users
            .clone()
            .get_me(as_caller(caller, pb::GetMeRequest {}))
            .await
            .map(|reply| reply.into_inner().user.expect("a user"))
    }
}
