//! `shop.user.v1.UserService` over the domain operations.

use shop_platform::grpc::convert::parse_uuid;
use shop_platform::grpc::{error::ServiceError, identity::Caller};
use shop_proto::pb::{
    common::PageResponse,
    user::{self as pb, user_service_server::UserService as UserServiceApi},
};
use tonic::{Request, Response, Status};

use super::{client_of, client_or_unknown, from_timestamp, timestamp, tokens_to_pb, user_to_pb};
use crate::{accounts::ProfileUpdate, context::Context, login::Logout, signup::SignUp, tokens::ALGORITHM};

/// The UserService implementation.
#[derive(Clone, Debug)]
pub struct UserApi {
    context: Context,
}

impl UserApi {
    /// Serves `context`.
    pub fn new(context: Context) -> Self {
        Self { context }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl UserServiceApi for UserApi {
    async fn start_email_verification(
        &self,
        request: Request<pb::StartEmailVerificationRequest>,
    ) -> Reply<pb::StartEmailVerificationResponse> {
        let client = client_of(&request);
        self.context
            .start_email_verification(&request.get_ref().email, client.as_deref())
            .await?;
        Ok(Response::new(pb::StartEmailVerificationResponse {}))
    }

    async fn confirm_email_verification(
        &self,
        request: Request<pb::ConfirmEmailVerificationRequest>,
    ) -> Reply<pb::ConfirmEmailVerificationResponse> {
        let request = request.into_inner();
        let token = self
            .context
            .confirm_email_verification(&request.email, &request.code)
            .await?;
        Ok(Response::new(pb::ConfirmEmailVerificationResponse {
            verification_token: token.token,
            expires_in_seconds: u32::try_from(token.expires_in.as_secs()).unwrap_or(u32::MAX),
        }))
    }

    async fn sign_up(&self, request: Request<pb::SignUpRequest>) -> Reply<pb::SignUpResponse> {
        let request = request.into_inner();
        let user = self
            .context
            .sign_up(SignUp {
                verification_token: request.verification_token,
                email: request.email,
                password: request.password,
                name: request.name,
                phone: request.phone,
                address: request.address,
            })
            .await?;
        Ok(Response::new(pb::SignUpResponse {
            user: Some(user_to_pb(&user)?),
        }))
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        let client = client_or_unknown(&request);
        let request = request.into_inner();
        let pair = self.context.login(&request.email, &request.password, &client).await?;
        Ok(Response::new(pb::LoginResponse {
            tokens: Some(tokens_to_pb(pair)),
        }))
    }

    async fn refresh_session(&self, request: Request<pb::RefreshSessionRequest>) -> Reply<pb::RefreshSessionResponse> {
        let pair = self.context.refresh_session(&request.get_ref().refresh_token).await?;
        Ok(Response::new(pb::RefreshSessionResponse {
            tokens: Some(tokens_to_pb(pair)),
        }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        let caller = Caller::required(&request)?;
        let request = request.into_inner();
        let expires_at = request
            .access_token_expires_at
            .as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| ServiceError::invalid("access_token_expires_at: required"))?;
        self.context
            .logout(
                &caller,
                Logout {
                    refresh_token: request.refresh_token,
                    access_token_id: request.access_token_id,
                    access_token_expires_at: expires_at,
                },
            )
            .await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Reply<pb::GetMeResponse> {
        let caller = Caller::required(&request)?;
        let user = self.context.me(&caller).await?;
        Ok(Response::new(pb::GetMeResponse {
            user: Some(user_to_pb(&user)?),
        }))
    }

    async fn update_profile(&self, request: Request<pb::UpdateProfileRequest>) -> Reply<pb::UpdateProfileResponse> {
        let caller = Caller::required(&request)?;
        let request = request.into_inner();
        let update = ProfileUpdate {
            name: request.name,
            phone: request.phone,
            address: request.address,
        };
        let user = self.context.update_profile(&caller, update).await?;
        Ok(Response::new(pb::UpdateProfileResponse {
            user: Some(user_to_pb(&user)?),
        }))
    }

    async fn change_password(&self, request: Request<pb::ChangePasswordRequest>) -> Reply<pb::ChangePasswordResponse> {
        let caller = Caller::required(&request)?;
        let client = client_or_unknown(&request);
        let request = request.get_ref();
        self.context
            .change_password(&caller, &client, &request.current_password, &request.new_password)
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn delete_account(&self, request: Request<pb::DeleteAccountRequest>) -> Reply<pb::DeleteAccountResponse> {
        let caller = Caller::required(&request)?;
        let client = client_or_unknown(&request);
        self.context
            .delete_account(&caller, &client, &request.get_ref().password)
            .await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    async fn list_users(&self, request: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        let caller = Caller::required(&request)?;
        let page = request.into_inner().page.unwrap_or_default();
        let page = self.context.list_users(&caller, page.limit, &page.cursor).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.users.iter().map(user_to_pb).collect::<Result<_, _>>()?,
            page: Some(PageResponse {
                next_cursor: page.next_cursor.unwrap_or_default(),
            }),
        }))
    }

    async fn set_user_role(&self, request: Request<pb::SetUserRoleRequest>) -> Reply<pb::SetUserRoleResponse> {
        let caller = Caller::required(&request)?;
        // Authorization before validation: a non-admin learns nothing about the input.
        caller.require_role(&[shop_platform::grpc::identity::Role::Admin])?;
        let request = request.into_inner();
        let id = parse_uuid(&request.user_id, "user_id")?;
        let role = super::role_from_pb(request.role)?;
        let user = self.context.set_user_role(&caller, id, role).await?;
        Ok(Response::new(pb::SetUserRoleResponse {
            user: Some(user_to_pb(&user)?),
        }))
    }

    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> Reply<pb::GetSigningKeysResponse> {
        let keys = self
            .context
            .sessions
            .tokens()
            .public_keys()
            .into_iter()
            .map(|key| pb::SigningKey {
                kid: key.kid,
                algorithm: ALGORITHM.to_owned(),
                public_key: key.public_key.to_vec(),
                not_after: key.not_after.map(timestamp),
            })
            .collect();
        Ok(Response::new(pb::GetSigningKeysResponse { keys }))
    }

    async fn check_token_revoked(
        &self,
        request: Request<pb::CheckTokenRevokedRequest>,
    ) -> Reply<pb::CheckTokenRevokedResponse> {
        let request = request.get_ref();
        let revoked = self
            .context
            .check_token_revoked(&request.jti, &request.session_id)
            .await?;
        Ok(Response::new(pb::CheckTokenRevokedResponse { revoked }))
    }
}
