//! The people of the campaign, set up over the REST edge before any fault: the admin (from
//! `SHOP_ADMIN_EMAIL`) who puts the products on sale, and the buyers, each signed up the way a
//! customer is (a code by mail, read from the user service's log on the `log://` transport, or
//! from wherever the caller of [`register`] receives the mail).

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{
    api::{Api, Reply},
    process::{Output, log_fields},
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD},
};

/// How long a verification code may take to show up in the log.
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its user id.
    pub user_id: String,
    /// Its access token.
    pub token: String,
}

/// A product on sale, and its stock when put on sale.
#[derive(Debug, Clone)]
pub struct Product {
    /// Its id.
    pub id: String,
    /// Its price (minor units).
    pub price: i64,
    /// Its stock before any order.
    pub initial_stock: i64,
}

/// The reply when it has `status`, an error naming `what` otherwise.
pub fn expect(what: &str, outcome: Result<Reply, reqwest::Error>, status: u16) -> anyhow::Result<Value> {
    let reply = outcome.with_context(|| what.to_owned())?;
    if reply.status != status {
        bail!("{what}: {} {}", reply.status, reply.body);
    }
    Ok(reply.body)
}

/// Signs in with `email` and `password`.
pub async fn log_in(api: &Api, email: &str, password: &str) -> anyhow::Result<Account> {
    let tokens = expect(
        &format!("signing in as {email}"),
        api.post("/auth/login", None, &json!({ "email": email, "password": password }))
            .await,
        200,
    )?;
    let token = tokens["access_token"].as_str().context("an access token")?.to_owned();
    let me = expect("reading /users/me", api.get("/users/me", Some(&token)).await, 200)?;
    let user_id = me["id"].as_str().context("a user id")?.to_owned();
    Ok(Account { user_id, token })
}

/// The bootstrapped admin.
pub async fn admin(api: &Api) -> anyhow::Result<Account> {
    log_in(api, ADMIN_EMAIL, ADMIN_PASSWORD).await
}

/// Puts a product with `stock` on sale. Prices are distinct and odd, so no two orders of
/// different contents are confused by their totals.
pub async fn put_on_sale(api: &Api, admin: &Account, name: &str, price: i64, stock: i64) -> anyhow::Result<Product> {
    let body = json!({
        "name": name,
        "description": "put on sale over the REST edge",
        "price": price,
        "currency": "KRW",
        "stock": stock,
    });
    let created = expect(
        &format!("creating product {name}"),
        api.post("/products", Some(&admin.token), &body).await,
        201,
    )?;
    Ok(Product {
        id: created["id"].as_str().context("a product id")?.to_owned(),
        price,
        initial_stock: stock,
    })
}

/// Signs up buyer number `n` of run `run` (verification code read from `mail_log`) and signs
/// in.
pub async fn sign_up(api: &Api, mail_log: &Output, run: &str, n: usize) -> anyhow::Result<Account> {
    let email = format!("buyer-{n}-{}@shop.example.com", &run[run.len().saturating_sub(12)..]);
    let password = format!("Buyer-{n}-Passw0rd!");
    let code = async |to: String| code_in_log(mail_log, &to).await;
    register(api, &email, &password, &format!("Buyer {n}"), code).await
}

/// Signs `email` up the way a customer does (asks a code, confirms the code `code` reads from
/// the mail to that address, creates the account) and signs in.
pub async fn register<F>(
    api: &Api,
    email: &str,
    password: &str,
    name: &str,
    code: impl FnOnce(String) -> F,
) -> anyhow::Result<Account>
where
    F: Future<Output = anyhow::Result<String>>,
{
    expect(
        &format!("asking a code for {email}"),
        api.post("/auth/email-verifications", None, &json!({ "email": email }))
            .await,
        202,
    )?;
    let code = code(email.to_owned()).await?;
    let confirmed = expect(
        &format!("confirming {email}"),
        api.post(
            "/auth/email-verifications/confirm",
            None,
            &json!({ "email": email, "code": code }),
        )
        .await,
        200,
    )?;
    let verification_token = confirmed["verification_token"]
        .as_str()
        .context("a verification token")?;
    let form = json!({
        "verification_token": verification_token,
        "email": email,
        "password": password,
        "name": name,
        "phone": "+82 10-1234-5678",
        "address": "1 Sejong-daero, Jung-gu, Seoul",
    });
    expect(
        &format!("signing up {email}"),
        api.post("/users", None, &form).await,
        201,
    )?;
    log_in(api, email, password).await
}

/// The code of the verification mail to `to`, as the `log://` transport logs it.
async fn code_in_log(output: &Output, to: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + MAIL_TIMEOUT;
    let mut seen = 0;
    loop {
        let lines = output.lines_from(seen);
        seen += lines.len();
        let code = lines.iter().filter_map(|line| log_fields(line)).find_map(|fields| {
            if fields.get("message")?.as_str()? != "mail (log transport)" || fields.get("to")?.as_str()? != to {
                return None;
            }
            code_in(fields.get("subject")?.as_str()?)
        });
        if let Some(code) = code {
            return Ok(code);
        }
        if Instant::now() >= deadline {
            bail!("no verification code for {to} in the user service's log within {MAIL_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The 6-digit code of a verification mail's subject (`Your shop verification code: 123456`).
fn code_in(text: &str) -> Option<String> {
    const BEFORE: &str = "verification code: ";
    let at = text.find(BEFORE)? + BEFORE.len();
    let code = text.get(at..at + 6)?;
    code.bytes().all(|b| b.is_ascii_digit()).then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_from_the_subject() {
        assert_eq!(
            code_in("Your shop verification code: 042917").as_deref(),
            Some("042917")
        );
        assert_eq!(code_in("Your shop verification code: 12ab56"), None);
        assert_eq!(code_in("Welcome"), None);
    }
}
