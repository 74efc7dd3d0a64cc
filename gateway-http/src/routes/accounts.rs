//! Accounts and sessions: email verification, sign-up, sign-in, token refresh and sign-out.

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use shop_proto::pb::user as pb;

use super::Call;
use crate::{
    AppState,
    auth::AuthToken,
    dto::{
        Empty,
        accounts::{
            ConfirmVerificationRequest, LoginRequest, LogoutRequest, RefreshRequest, SignUpRequest,
            StartVerificationRequest, TokenPair, User, VerificationToken, user,
        },
    },
    extract::{ApiJson, OptionalApiJson},
    limits::ClientIp,
    problem::{Always, BodyErrors, Unauthenticated},
    problem::{ApiError, Problem},
};

/// The metadata entry carrying the client's IP address to the user service, which limits how
/// often one client may ask for verification codes.
pub const CLIENT_IP_METADATA: &str = "x-shop-client-ip";

/// The account and session routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/email-verifications", post(start_email_verification))
        .route("/auth/email-verifications/confirm", post(confirm_email_verification))
        .route("/users", post(sign_up))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
}

/// Sends a 6-digit code to an email address, the first step of sign-up.
///
/// The reply is the same whether or not the address is registered.
#[utoipa::path(
    post,
    path = "/auth/email-verifications",
    tag = "accounts",
    request_body = StartVerificationRequest,
    responses(
        (status = 202, description = "A code is on its way (if the address may sign up).", body = Empty),
        BodyErrors,
        Always,
    )
)]
pub async fn start_email_verification(
    State(state): State<AppState>,
    call: Call,
    client: ClientIp,
    ApiJson(body): ApiJson<StartVerificationRequest>,
) -> Result<(StatusCode, Json<Empty>), ApiError> {
    let mut request = call.anonymous(pb::StartEmailVerificationRequest { email: body.email });
    client.attach(&mut request);
    state.users().start_email_verification(request).await?;
    Ok((StatusCode::ACCEPTED, Json(Empty {})))
}

/// Exchanges a right code for a verification token.
#[utoipa::path(
    post,
    path = "/auth/email-verifications/confirm",
    tag = "accounts",
    request_body = ConfirmVerificationRequest,
    responses(
        (status = 200, description = "The code was right.", body = VerificationToken),
        (status = 400, description = "`invalid_code`: wrong, expired, or used up after 5 tries; or bad input.",
            body = Problem, content_type = "application/problem+json"),
        BodyErrors,
        Always,
    )
)]
pub async fn confirm_email_verification(
    State(state): State<AppState>,
    call: Call,
    ApiJson(body): ApiJson<ConfirmVerificationRequest>,
) -> Result<Json<VerificationToken>, ApiError> {
    let message = pb::ConfirmEmailVerificationRequest {
        email: body.email,
        code: body.code,
    };
    let reply = state
        .users()
        .confirm_email_verification(call.anonymous(message))
        .await?;
    Ok(Json(reply.into_inner().into()))
}

/// Creates an account (role `customer`) for a verified email address.
#[utoipa::path(
    post,
    path = "/users",
    tag = "accounts",
    request_body = SignUpRequest,
    responses(
        (status = 201, description = "The new account.", body = User),
        (status = 400, description = "`weak_password`, `invalid_verification_token`, or bad input.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`: the address already has an account.",
            body = Problem, content_type = "application/problem+json"),
        BodyErrors,
        Always,
    )
)]
pub async fn sign_up(
    State(state): State<AppState>,
    call: Call,
    ApiJson(body): ApiJson<SignUpRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let reply = state.users().sign_up(call.anonymous(body.into())).await?;
    Ok((StatusCode::CREATED, Json(user(reply.into_inner().user)?)))
}

/// Signs in and opens a session.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "accounts",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "The new session's tokens.", body = TokenPair),
        (status = 401, description = "`invalid_credentials`: unknown address or wrong password.",
            body = Problem, content_type = "application/problem+json"),
        BodyErrors,
        Always,
    )
)]
pub async fn login(
    State(state): State<AppState>,
    call: Call,
    client: ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let message = pb::LoginRequest {
        email: body.email,
        password: body.password,
    };
    let mut request = call.anonymous(message);
    client.attach(&mut request);
    let reply = state.users().login(request).await?;
    Ok(Json(TokenPair::try_from(reply.into_inner().tokens)?))
}

/// Exchanges a refresh token for a new pair.
///
/// A refresh token works once; presenting a used one ends its whole session.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "accounts",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The session's new tokens.", body = TokenPair),
        (status = 401, description = "`invalid_refresh_token`: unknown, expired, ended or already used.",
            body = Problem, content_type = "application/problem+json"),
        BodyErrors,
        Always,
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    call: Call,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let message = pb::RefreshSessionRequest {
        refresh_token: body.refresh_token,
    };
    let reply = state.users().refresh_session(call.anonymous(message)).await?;
    Ok(Json(TokenPair::try_from(reply.into_inner().tokens)?))
}

/// Signs out.
///
/// The access token is refused from then on, and the session of the refresh token given (if
/// any) ends too. The body may be left out.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "accounts",
    request_body(content = LogoutRequest, description = "Optional."),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out."),
        Unauthenticated,
        BodyErrors,
        Always,
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    call: Call,
    AuthToken(token): AuthToken,
    OptionalApiJson(body): OptionalApiJson<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    let message = pb::LogoutRequest {
        refresh_token: body.refresh_token,
        access_token_id: token.token_id.clone(),
        access_token_expires_at: Some(prost_types::Timestamp {
            seconds: token.expires_at,
            nanos: 0,
        }),
    };
    state.users().logout(call.for_caller(&token.caller, message)).await?;
    state.auth.mark_revoked(&token.token_id);
    Ok(StatusCode::NO_CONTENT)
}
