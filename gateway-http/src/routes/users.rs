//! The caller's own account, and every account for admins.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, put},
};
use shop_proto::pb::{common, user as pb};
use uuid::Uuid;

use super::Call;
use crate::{
    AppState,
    auth::{AuthToken, AuthUser},
    dto::{
        PageQuery,
        accounts::{
            ChangePasswordRequest, DeleteAccountRequest, SetRoleRequest, UpdateProfileRequest, User, UserList, user,
        },
        next_cursor,
    },
    extract::{ApiJson, ApiPath, ApiQuery},
    limits::ClientIp,
    problem::{Always, BadInput, BodyErrors, Forbidden, NotFound, Unauthenticated},
    problem::{ApiError, Problem},
};

/// The account routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users/me", get(get_me).patch(update_me).delete(delete_me))
        .route("/users/me/password", put(change_password))
        .route("/users", get(list_users))
        .route("/users/{id}/role", put(set_role))
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account.", body = User),
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn get_me(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
) -> Result<Json<User>, ApiError> {
    let reply = state
        .users()
        .get_me(call.for_caller(&caller, pb::GetMeRequest {}))
        .await?;
    Ok(Json(user(reply.into_inner().user)?))
}

/// Changes some of the caller's profile fields; absent fields keep their value.
#[utoipa::path(
    patch,
    path = "/users/me",
    tag = "users",
    request_body = UpdateProfileRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account after the change.", body = User),
        BodyErrors,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn update_me(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiJson(body): ApiJson<UpdateProfileRequest>,
) -> Result<Json<User>, ApiError> {
    let reply = state
        .users()
        .update_profile(call.for_caller(&caller, body.into()))
        .await?;
    Ok(Json(user(reply.into_inner().user)?))
}

/// Changes the caller's password; every other session of the caller ends.
#[utoipa::path(
    put,
    path = "/users/me/password",
    tag = "users",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The password is changed."),
        (status = 400, description = "`weak_password`, or bad input.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`invalid_credentials`: the current password is wrong.",
            body = Problem, content_type = "application/problem+json"),
        BodyErrors,
        Unauthenticated,
        Always,
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    call: Call,
    client: ClientIp,
    AuthUser(caller): AuthUser,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let message = pb::ChangePasswordRequest {
        current_password: body.current_password,
        new_password: body.new_password,
    };
    let mut request = call.for_caller(&caller, message);
    client.attach(&mut request);
    state.users().change_password(request).await?;
    // The caller's other sessions ended.
    state.auth.forget_live_answers();
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the caller's account: tokens are revoked and personal data removed.
#[utoipa::path(
    delete,
    path = "/users/me",
    tag = "users",
    request_body = DeleteAccountRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The account is deleted."),
        (status = 403, description = "`invalid_credentials`: the password is wrong.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_admin`: the caller is the only admin.",
            body = Problem, content_type = "application/problem+json"),
        BodyErrors,
        Unauthenticated,
        Always,
    )
)]
pub async fn delete_me(
    State(state): State<AppState>,
    call: Call,
    client: ClientIp,
    AuthToken(token): AuthToken,
    ApiJson(body): ApiJson<DeleteAccountRequest>,
) -> Result<StatusCode, ApiError> {
    let message = pb::DeleteAccountRequest {
        password: body.password,
    };
    let mut request = call.for_caller(&token.caller, message);
    client.attach(&mut request);
    state.users().delete_account(request).await?;
    state.auth.mark_revoked(&token.token_id);
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the accounts, newest first (admins only).
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of accounts.", body = UserList),
        BadInput,
        Unauthenticated,
        Forbidden,
        Always,
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<UserList>, ApiError> {
    let message = pb::ListUsersRequest {
        page: Some(query.to_page()?),
    };
    let reply = state
        .users()
        .list_users(call.for_caller(&caller, message))
        .await?
        .into_inner();
    Ok(Json(UserList {
        items: reply.users.into_iter().map(User::try_from).collect::<Result<_, _>>()?,
        next_cursor: next_cursor(reply.page),
    }))
}

/// Gives a user another role (admins only); every session of that user ends.
#[utoipa::path(
    put,
    path = "/users/{id}/role",
    tag = "users",
    params(("id" = Uuid, Path, description = "The user's id.")),
    request_body = SetRoleRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account with its new role.", body = User),
        (status = 409, description = "`last_admin`: no admin would be left.",
            body = Problem, content_type = "application/problem+json"),
        BodyErrors,
        Unauthenticated,
        Forbidden,
        NotFound,
        Always,
    )
)]
pub async fn set_role(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SetRoleRequest>,
) -> Result<Json<User>, ApiError> {
    let message = pb::SetUserRoleRequest {
        user_id: id.to_string(),
        role: common::Role::from(body.role).into(),
    };
    let reply = state.users().set_user_role(call.for_caller(&caller, message)).await?;
    // Every session of the user ended, so that no token keeps the old role.
    state.auth.forget_live_answers();
    Ok(Json(user(reply.into_inner().user)?))
}
