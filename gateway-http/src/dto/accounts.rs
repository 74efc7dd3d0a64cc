//! Accounts and sessions: sign-up, sign-in, tokens, profiles and roles.
//!
//! Bodies that carry a password or a token have no `Debug` printing it, so it cannot end up in
//! a log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_proto::pb::{common, user as pb};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{BadReply, required, time, uuid};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Buys.
    Customer,
    /// Buys and sells.
    Seller,
    /// Manages everything.
    Admin,
}

impl TryFrom<i32> for Role {
    type Error = BadReply;

    fn try_from(raw: i32) -> Result<Self, Self::Error> {
        match common::Role::try_from(raw) {
            Ok(common::Role::Customer) => Ok(Self::Customer),
            Ok(common::Role::Seller) => Ok(Self::Seller),
            Ok(common::Role::Admin) => Ok(Self::Admin),
            Ok(common::Role::Unspecified) | Err(_) => Err(BadReply("user role")),
        }
    }
}

impl From<Role> for common::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Customer => Self::Customer,
            Role::Seller => Self::Seller,
            Role::Admin => Self::Admin,
        }
    }
}

/// A user's account, as its owner and admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    /// The user's id.
    pub id: Uuid,
    /// The verified email address, in lower case.
    pub email: String,
    /// The display name.
    pub name: String,
    /// The phone number.
    pub phone: String,
    /// The shipping address.
    pub address: String,
    /// What the user may do.
    pub role: Role,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl TryFrom<pb::User> for User {
    type Error = BadReply;

    fn try_from(user: pb::User) -> Result<Self, Self::Error> {
        Ok(Self {
            id: uuid(&user.id, "user id")?,
            role: Role::try_from(user.role)?,
            created_at: time(user.created_at, "user created_at")?,
            email: user.email,
            name: user.name,
            phone: user.phone,
            address: user.address,
        })
    }
}

/// The user a reply carries.
pub fn user(user: Option<pb::User>) -> Result<User, BadReply> {
    User::try_from(required(user, "user")?)
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// The accounts, newest first.
    pub items: Vec<User>,
    /// The cursor of the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `POST /auth/email-verifications`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StartVerificationRequest {
    /// Where to send the code.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

/// `POST /auth/email-verifications/confirm`.
#[derive(Deserialize, ToSchema)]
pub struct ConfirmVerificationRequest {
    /// The address the code was sent to.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// The 6-digit code from the email.
    #[schema(min_length = 1)]
    pub code: String,
}

/// Proof that the client controls an email address, for `POST /users`.
#[derive(Serialize, ToSchema)]
pub struct VerificationToken {
    /// Opaque, single-use, bound to the address.
    pub verification_token: String,
    /// Seconds until the token expires.
    pub expires_in: u32,
}

impl From<pb::ConfirmEmailVerificationResponse> for VerificationToken {
    fn from(reply: pb::ConfirmEmailVerificationResponse) -> Self {
        Self {
            verification_token: reply.verification_token,
            expires_in: reply.expires_in_seconds,
        }
    }
}

/// `POST /users`.
#[derive(Deserialize, ToSchema)]
pub struct SignUpRequest {
    /// From `POST /auth/email-verifications/confirm`.
    #[schema(min_length = 1)]
    pub verification_token: String,
    /// The verified address.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8 to 128 characters with at least a letter, a digit and a symbol.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// The display name, 1 to 100 characters (surrounding white space is trimmed), no control
    /// characters but newline.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// The phone number, 1 to 32 characters, as the name.
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub phone: String,
    /// The shipping address, 1 to 500 characters, as the name.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub address: String,
}

impl std::fmt::Debug for SignUpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password and the token stay out of any log.
        f.debug_struct("SignUpRequest")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl From<SignUpRequest> for pb::SignUpRequest {
    fn from(body: SignUpRequest) -> Self {
        Self {
            verification_token: body.verification_token,
            email: body.email,
            password: body.password,
            name: body.name,
            phone: body.phone,
            address: body.address,
        }
    }
}

/// `POST /auth/login`.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The account's email address.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// The account's password.
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
}

/// `POST /auth/refresh`.
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token of the latest login or refresh; it is used up.
    pub refresh_token: String,
}

/// `POST /auth/logout`; the body may be left out.
#[derive(Default, Deserialize, ToSchema)]
pub struct LogoutRequest {
    /// Also end the session of this refresh token.
    pub refresh_token: Option<String>,
}

/// A fresh pair of tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    /// For `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u32,
    /// Opaque and single-use, for `POST /auth/refresh`.
    pub refresh_token: String,
}

impl TryFrom<Option<pb::TokenPair>> for TokenPair {
    type Error = BadReply;

    fn try_from(tokens: Option<pb::TokenPair>) -> Result<Self, Self::Error> {
        let tokens = required(tokens, "token pair")?;
        Ok(Self {
            access_token: tokens.access_token,
            token_type: if tokens.token_type.is_empty() {
                "Bearer".to_owned()
            } else {
                tokens.token_type
            },
            expires_in: tokens.expires_in_seconds,
            refresh_token: tokens.refresh_token,
        })
    }
}

/// `PATCH /users/me`: absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateProfileRequest {
    /// The new display name, under the sign-up rule.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    /// The new phone number, under the sign-up rule.
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub phone: Option<String>,
    /// The new shipping address, under the sign-up rule.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub address: Option<String>,
}

impl From<UpdateProfileRequest> for pb::UpdateProfileRequest {
    fn from(body: UpdateProfileRequest) -> Self {
        Self {
            name: body.name,
            phone: body.phone,
            address: body.address,
        }
    }
}

/// `PUT /users/me/password`.
#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    #[schema(min_length = 1, max_length = 128)]
    pub current_password: String,
    /// The new password, under the sign-up rule.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// `DELETE /users/me`.
#[derive(Deserialize, ToSchema)]
pub struct DeleteAccountRequest {
    /// The account's password, as confirmation.
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
}

/// `PUT /users/{id}/role`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetRoleRequest {
    /// The new role.
    pub role: Role,
}
