//! Sign-up: an address is proven with a mailed code, then the account is made with the
//! verification token the code was exchanged for.
//!
//! The reply to "send me a code" is the same whether or not the address has an account, and it
//! costs the same: the limits are counted and a mail is sent either way (a code, or a notice that
//! the account exists), so neither the answer, nor its timing, nor the rate limits tell.

use sea_orm::{ActiveModelTrait as _, ActiveValue::Set, TransactionTrait as _};
use shop_platform::grpc::{error::ServiceError, identity::Role};
use uuid::Uuid;

use crate::{
    context::Context,
    domain::{self, Email, Password},
    entity::user,
    mail::Mail,
    sessions::now,
    users,
    verification::VerificationToken,
};

/// A sign-up request, as received.
#[derive(Debug, Clone, Default)]
pub struct SignUp {
    /// The token from ConfirmEmailVerification.
    pub verification_token: String,
    /// The verified address.
    pub email: String,
    /// The new password.
    pub password: String,
    /// The display name.
    pub name: String,
    /// The phone number.
    pub phone: String,
    /// The shipping address.
    pub address: String,
}

impl Context {
    /// Mails a code to `email` (or an "already registered" notice), within the send limits.
    /// `client` identifies the requester for the per-client limit.
    #[tracing::instrument(skip_all)]
    pub async fn start_email_verification(&self, email: &str, client: Option<&str>) -> Result<(), ServiceError> {
        let email = Email::parse(email)?;
        self.verification.admit_send(&email, client).await?;
        let mail = if users::find_by_email(&self.db, &email).await?.is_some() {
            Mail::already_registered(&email)
        } else {
            let code = self.verification.issue_code(&email).await?;
            Mail::verification_code(&email, &code, self.verification.code_ttl())
        };
        if let Err(error) = self.mailer.send(&mail).await {
            tracing::error!(error = format!("{error:#}"), "verification mail not sent");
            self.verification.release_send(&email).await;
            return Err(ServiceError::Unavailable(
                "the mail could not be sent; retry later".to_owned(),
            ));
        }
        Ok(())
    }

    /// Exchanges a right code for a verification token.
    #[tracing::instrument(skip_all)]
    pub async fn confirm_email_verification(&self, email: &str, code: &str) -> Result<VerificationToken, ServiceError> {
        let email = Email::parse(email)?;
        self.verification.confirm(&email, code).await
    }

    /// Creates a customer account. Nothing changes unless every check passes; the verification
    /// token is used up only when the account is made.
    #[tracing::instrument(skip_all)]
    pub async fn sign_up(&self, request: SignUp) -> Result<user::Model, ServiceError> {
        let email = Email::parse(&request.email)?;
        let password = Password::new(&request.password)?;
        let name = domain::profile_field("name", &request.name, domain::MAX_NAME)?;
        let phone = domain::profile_field("phone", &request.phone, domain::MAX_PHONE)?;
        let address = domain::profile_field("address", &request.address, domain::MAX_ADDRESS)?;
        let token = request.verification_token.trim();
        self.verification.check_token(token, &email).await?;
        if users::find_by_email(&self.db, &email).await?.is_some() {
            return Err(users::email_taken());
        }
        let password_hash = self.passwords.hash(password.as_str()).await?;

        let now = now();
        let txn = self.db.begin().await?;
        let inserted = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(email.as_str().to_owned()),
            password_hash: Set(password_hash),
            name: Set(name),
            phone: Set(phone),
            address: Set(address),
            role: Set(Role::Customer.as_str().to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await;
        let created = match inserted {
            Ok(created) => created,
            Err(error) if users::is_duplicate(&error) => return Err(users::email_taken()),
            Err(error) => return Err(error.into()),
        };
        // Taken last, inside the transaction: a token raced away rolls the account back.
        self.verification.consume_token(token, &email).await?;
        txn.commit().await?;
        tracing::info!(user = %created.id, "account created");
        Ok(created)
    }
}
