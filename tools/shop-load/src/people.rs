//! The accounts and products a run needs, made over the REST edge before the timed part: the
//! admin signs in and puts products on sale; users sign up the way customers do (a code by
//! mail, read by shop-load's SMTP receiver), a few at a time since each sign-up and sign-in
//! hashes a password (argon2id), which the user service bounds.

use std::time::Duration;

use anyhow::Context as _;
use fault_campaign::accounts::{self, Account, Product};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::target::Shop;

/// Sign-ups at once: the user service hashes six passwords at a time by default.
const SIGN_UPS_AT_ONCE: usize = 4;
/// How long a verification mail may take to arrive.
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin, signed in.
pub async fn admin(shop: &Shop) -> anyhow::Result<Account> {
    accounts::log_in(&shop.api, &shop.admin.0, &shop.admin.1)
        .await
        .context("signing in as the admin (spawned: made at start; --url: --admin-email/--admin-password)")
}

/// Puts `count` products named `name N` on sale with `stock` each.
pub async fn products(
    shop: &Shop,
    admin: &Account,
    name: &str,
    count: usize,
    stock: i64,
) -> anyhow::Result<Vec<Product>> {
    let mut products = Vec::with_capacity(count);
    for n in 1..=count {
        // Distinct prices, so any two products' lines are told apart by their totals.
        let price = 1_000 + 10 * i64::try_from(n)?;
        products.push(accounts::put_on_sale(&shop.api, admin, &format!("{name} {n}"), price, stock).await?);
    }
    Ok(products)
}

/// Signs up `count` new users of run `run` and signs each in.
pub async fn users(shop: &Shop, run: &str, count: usize) -> anyhow::Result<Vec<Account>> {
    let mail = shop
        .mail
        .clone()
        .context("signing users up needs their verification mail: with --url, give --smtp-listen and point the shop's SMTP_URL at it")?;
    futures::stream::iter(0..count)
        .map(|n| {
            let mail = mail.clone();
            async move {
                let email = format!("load-{run}-{n}@shop.example.com");
                let password = format!("Load-{n}-Passw0rd!");
                let code = async |to: String| mail.next_code(&to, MAIL_TIMEOUT).await;
                accounts::register(&shop.api, &email, &password, &format!("Load user {n}"), code).await
            }
        })
        .buffered(SIGN_UPS_AT_ONCE)
        .try_collect()
        .await
}
