//! Sign-in, refresh rotation and reuse detection, logout, and the sessions that end with a
//! password change or an account deletion.

use std::time::{Duration, Instant};

use shop_platform::grpc::error::RETRY_AFTER_METADATA;
use shop_proto::pb::user as pb;
use tonic::Code;

use crate::helpers::{PASSWORD, TestApp, TestUser, as_caller, code, spawn_app, spawn_app_with, unique_email};

async fn refresh(app: &TestApp, token: &str) -> Result<pb::TokenPair, tonic::Status> {
    app.users
        .clone()
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: token.to_owned(),
        })
        .await
        .map(|reply| reply.into_inner().tokens.unwrap())
}

async fn second_session(app: &TestApp, user: &TestUser) -> TestUser {
    let tokens = app.login(&user.email, &user.password).await.unwrap();
    app.user_with(user.email.clone(), user.password.clone(), tokens).await
}

#[tokio::test]
async fn login_issues_a_verifiable_pair() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    assert_eq!(user.tokens.token_type, "Bearer");
    assert_eq!(user.tokens.expires_in_seconds, 900);
    let claims = app.verify(&user.tokens.access_token).await;
    assert_eq!(claims["role"], "customer");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert!(!app.is_revoked(&user).await);
}

#[tokio::test]
async fn unknown_address_and_wrong_password_look_alike() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let unknown = unique_email();
    let mut fastest = Vec::new();
    for (email, password) in [(user.email.as_str(), "wr0ng-password"), (unknown.as_str(), PASSWORD)] {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let error = app.login(email, password).await.unwrap_err();
            best = best.min(started.elapsed());
            assert_eq!(
                (error.code(), code(&error)),
                (Code::Unauthenticated, "invalid_credentials")
            );
            assert_eq!(error.message(), "wrong email address or password");
        }
        fastest.push(best);
    }
    // Both verify an argon2 hash: neither answer is several times faster (best of three, to
    // look past scheduling noise).
    let (slow, fast) = (fastest[0].max(fastest[1]), fastest[0].min(fastest[1]));
    assert!(slow < fast * 5, "{fastest:?}");
}

#[tokio::test]
async fn repeated_failures_are_throttled() {
    let app = spawn_app_with(&[("SHOP_LOGIN_FAILURE_LIMIT", "3")]).await;
    let user = app.new_user().await;
    for _ in 0..3 {
        let error = app.login(&user.email, "wr0ng-password").await.unwrap_err();
        assert_eq!(code(&error), "invalid_credentials");
    }
    // Even the right password waits now.
    let error = app.login(&user.email, PASSWORD).await.unwrap_err();
    assert_eq!(
        (error.code(), code(&error)),
        (Code::ResourceExhausted, "too_many_requests")
    );
    assert!(error.metadata().get("x-shop-retry-after").is_some());
}

#[tokio::test]
async fn parallel_guesses_cannot_outrun_the_throttle() {
    let app = std::sync::Arc::new(spawn_app_with(&[("SHOP_LOGIN_FAILURE_LIMIT", "3")]).await);
    let user = app.new_user().await;
    let guesses: Vec<_> = (0..20)
        .map(|n| {
            let (app, email) = (app.clone(), user.email.clone());
            tokio::spawn(async move { app.login(&email, &format!("wr0ng-guess-{n}")).await.unwrap_err() })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        let error = guess.await.unwrap();
        match code(&error) {
            "invalid_credentials" => checked += 1,
            other => assert_eq!(other, "too_many_requests"),
        }
    }
    assert!(
        checked <= 3,
        "{checked} of 20 concurrent guesses were checked, the limit is 3"
    );
}

/// Signs in as if through the gateway for `client`.
async fn login_from(app: &TestApp, client: &str, email: &str, password: &str) -> Result<pb::TokenPair, tonic::Status> {
    let mut request = tonic::Request::new(pb::LoginRequest {
        email: email.to_owned(),
        password: password.to_owned(),
    });
    request
        .metadata_mut()
        .insert("x-shop-client-ip", client.parse().unwrap());
    app.users
        .clone()
        .login(request)
        .await
        .map(|reply| reply.into_inner().tokens.unwrap())
}

fn retry_after(error: &tonic::Status) -> u64 {
    error
        .metadata()
        .get(RETRY_AFTER_METADATA)
        .expect("a retry-after")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_stranger_guessing_cannot_lock_the_owner_out() {
    let app = spawn_app_with(&[("SHOP_LOGIN_FAILURE_WINDOW", "60s")]).await;
    let user = app.new_user().await;
    let (stranger, owner) = ("203.0.113.66", "198.51.100.7");
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        let error = login_from(&app, stranger, &user.email, "wr0ng-password")
            .await
            .unwrap_err();
        outcomes.push(code(&error).to_owned());
    }
    assert_eq!(outcomes[..5], ["invalid_credentials"; 5]);
    assert_eq!(outcomes[5..], ["too_many_requests"; 3]);

    // The owner, elsewhere, signs in.
    login_from(&app, owner, &user.email, PASSWORD)
        .await
        .expect("the owner is not locked out");
    // The stranger stays refused, even with the right password, and is told for how long.
    let error = login_from(&app, stranger, &user.email, PASSWORD).await.unwrap_err();
    assert_eq!(
        (error.code(), code(&error)),
        (Code::ResourceExhausted, "too_many_requests")
    );
    assert!((1..=60).contains(&retry_after(&error)), "{}", retry_after(&error));
}

#[tokio::test]
async fn many_guessing_clients_slow_the_account_but_never_lock_it() {
    let app = spawn_app_with(&[
        ("SHOP_LOGIN_FAILURE_LIMIT", "2"),
        ("SHOP_LOGIN_ACCOUNT_FAILURE_LIMIT", "4"),
        ("SHOP_LOGIN_ACCOUNT_DELAY", "500ms"),
    ])
    .await;
    let user = app.new_user().await;
    for client in ["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let error = login_from(&app, client, &user.email, "wr0ng-password")
            .await
            .unwrap_err();
        assert_eq!(code(&error), "invalid_credentials");
    }
    // Past the account's ceiling, a client that failed on it is refused (below its own limit)…
    let error = login_from(&app, "192.0.2.2", &user.email, PASSWORD).await.unwrap_err();
    assert_eq!(code(&error), "too_many_requests");
    // …and one that has not is slowed, then checked: the owner signs in.
    let started = Instant::now();
    login_from(&app, "192.0.2.9", &user.email, PASSWORD)
        .await
        .expect("the owner is slowed, not locked out");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn lockouts_grow_with_every_return() {
    let app = spawn_app_with(&[("SHOP_LOGIN_FAILURE_LIMIT", "1"), ("SHOP_LOGIN_FAILURE_WINDOW", "1s")]).await;
    let user = app.new_user().await;
    let client = "203.0.113.5";
    // One failure, then the refusal that starts a lockout; its Retry-After.
    let lockout = || async {
        let wrong = || login_from(&app, client, &user.email, "wr0ng-password");
        wrong().await.unwrap_err();
        wrong().await.unwrap_err()
    };
    let first = lockout().await;
    assert_eq!(retry_after(&first), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = lockout().await;
    assert_eq!(code(&second), "too_many_requests");
    assert_eq!(retry_after(&second), 2, "the second lockout is twice the first");
}

#[tokio::test]
async fn a_sign_in_lockout_does_not_block_a_password_change() {
    let app = spawn_app_with(&[("SHOP_LOGIN_FAILURE_LIMIT", "2")]).await;
    let user = app.new_user().await;
    for _ in 0..3 {
        app.login(&user.email, "wr0ng-password").await.unwrap_err();
    }
    let error = app.login(&user.email, PASSWORD).await.unwrap_err();
    assert_eq!(code(&error), "too_many_requests", "sign-in is locked");
    // The same client, signed in, confirms its password for a change: its own counter.
    let request = as_caller(
        &user.caller,
        pb::ChangePasswordRequest {
            current_password: PASSWORD.to_owned(),
            new_password: "An0ther-password".to_owned(),
        },
    );
    app.users.clone().change_password(request).await.expect("not locked");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_ends_the_session() {
    let app = spawn_app().await;
    let user = app.new_user().await;

    let second = refresh(&app, &user.tokens.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, user.tokens.refresh_token);
    let rotated = app
        .user_with(user.email.clone(), user.password.clone(), second.clone())
        .await;
    assert_eq!(rotated.caller.session_id, user.caller.session_id, "same session");
    let third = refresh(&app, &second.refresh_token).await.unwrap();

    // The first token again: refused, and its whole session ends.
    let error = refresh(&app, &user.tokens.refresh_token).await.unwrap_err();
    assert_eq!(
        (error.code(), code(&error)),
        (Code::Unauthenticated, "invalid_refresh_token")
    );
    let error = refresh(&app, &third.refresh_token).await.unwrap_err();
    assert_eq!(
        code(&error),
        "invalid_refresh_token",
        "the latest token died with its session"
    );
    assert!(
        app.is_revoked(&rotated).await,
        "the session's access tokens are refused"
    );

    // Other sessions are not affected.
    let other = second_session(&app, &user).await;
    assert!(!app.is_revoked(&other).await);
    refresh(&app, &other.tokens.refresh_token).await.unwrap();
    for bad in ["", "made-up"] {
        let error = refresh(&app, bad).await.unwrap_err();
        assert_eq!(code(&error), "invalid_refresh_token");
    }
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_session() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let other = second_session(&app, &user).await;

    let logout = |user: &TestUser, refresh_token: Option<String>| {
        let request = as_caller(
            &user.caller,
            pb::LogoutRequest {
                refresh_token,
                access_token_id: user.jti.clone(),
                access_token_expires_at: Some(prost_types::Timestamp {
                    seconds: user.exp,
                    nanos: 0,
                }),
            },
        );
        let mut users = app.users.clone();
        async move { users.logout(request).await }
    };
    logout(&user, Some(user.tokens.refresh_token.clone())).await.unwrap();
    // Idempotent.
    logout(&user, None).await.unwrap();

    assert!(app.is_revoked(&user).await);
    // The jti alone is revoked too (a gateway that does not send the session).
    let revoked = app
        .users
        .clone()
        .check_token_revoked(pb::CheckTokenRevokedRequest {
            jti: user.jti.clone(),
            session_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert!(revoked);
    let error = refresh(&app, &user.tokens.refresh_token).await.unwrap_err();
    assert_eq!(code(&error), "invalid_refresh_token");
    assert!(!app.is_revoked(&other).await, "the other session lives on");

    // Bad input.
    let error = app
        .users
        .clone()
        .logout(as_caller(&other.caller, pb::LogoutRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = app
        .users
        .clone()
        .logout(pb::LogoutRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
    let error = app
        .users
        .clone()
        .check_token_revoked(pb::CheckTokenRevokedRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_password_change_ends_every_other_session() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let other = second_session(&app, &user).await;
    let new_password = "n3w-Password!";

    let change = |current: &str, new: &str| {
        let request = as_caller(
            &user.caller,
            pb::ChangePasswordRequest {
                current_password: current.to_owned(),
                new_password: new.to_owned(),
            },
        );
        let mut users = app.users.clone();
        async move { users.change_password(request).await }
    };
    let error = change("wr0ng-password", new_password).await.unwrap_err();
    assert_eq!(
        (error.code(), code(&error)),
        (Code::PermissionDenied, "invalid_credentials")
    );
    let error = change(PASSWORD, "weak").await.unwrap_err();
    assert_eq!((error.code(), code(&error)), (Code::InvalidArgument, "weak_password"));
    assert!(!app.is_revoked(&other).await, "refused changes end nothing");

    change(PASSWORD, new_password).await.unwrap();
    assert!(app.is_revoked(&other).await);
    assert_eq!(
        code(&refresh(&app, &other.tokens.refresh_token).await.unwrap_err()),
        "invalid_refresh_token"
    );
    assert!(!app.is_revoked(&user).await, "the calling session stays signed in");
    refresh(&app, &user.tokens.refresh_token).await.unwrap();

    assert_eq!(
        code(&app.login(&user.email, PASSWORD).await.unwrap_err()),
        "invalid_credentials"
    );
    app.login(&user.email, new_password).await.unwrap();
}

#[tokio::test]
async fn a_deleted_account_cannot_sign_in() {
    let app = spawn_app_with(&[("SHOP_VERIFICATION_RESEND_INTERVAL", "100ms")]).await;
    let user = app.new_user().await;
    let product = app.catalog.add("Lamp", 12_900, "KRW");
    app.wishlist
        .clone()
        .add_wishlist_item(as_caller(
            &user.caller,
            pb::AddWishlistItemRequest {
                product_id: product,
                quantity: None,
            },
        ))
        .await
        .unwrap();

    let delete = |password: &str| {
        let request = as_caller(
            &user.caller,
            pb::DeleteAccountRequest {
                password: password.to_owned(),
            },
        );
        let mut users = app.users.clone();
        async move { users.delete_account(request).await }
    };
    let error = delete("wr0ng-password").await.unwrap_err();
    assert_eq!(
        (error.code(), code(&error)),
        (Code::PermissionDenied, "invalid_credentials")
    );
    app.me(&user.caller).await.unwrap();

    delete(PASSWORD).await.unwrap();
    assert_eq!(
        code(&app.login(&user.email, PASSWORD).await.unwrap_err()),
        "invalid_credentials"
    );
    assert_eq!(app.me(&user.caller).await.unwrap_err().code(), Code::NotFound);
    assert!(app.is_revoked(&user).await);
    assert_eq!(
        code(&refresh(&app, &user.tokens.refresh_token).await.unwrap_err()),
        "invalid_refresh_token"
    );
    let wishlist = app
        .wishlist
        .clone()
        .list_wishlist(as_caller(&user.caller, pb::ListWishlistRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(wishlist.items.is_empty(), "personal data is gone");

    // The address is free again.
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.sign_up(&user.email).await;
}

#[tokio::test]
async fn an_ended_session_stays_ended_when_the_cache_forgets_it() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let other = second_session(&app, &user).await;
    app.users
        .clone()
        .logout(as_caller(
            &user.caller,
            pb::LogoutRequest {
                refresh_token: None,
                access_token_id: user.jti.clone(),
                access_token_expires_at: Some(prost_types::Timestamp {
                    seconds: user.exp,
                    nanos: 0,
                }),
            },
        ))
        .await
        .unwrap();
    assert!(app.is_revoked(&user).await);

    // A replica whose cache knows nothing (Redis restarted without persistence): the session's
    // end is read from the database, and the other session is still live.
    let replica = app.replica_with_empty_cache().await;
    assert!(replica.is_revoked(&user).await, "a lost cache brought a session back");
    assert!(!replica.is_revoked(&other).await);
    // Asked again, the answers come from what the replica remembered, and stay the same.
    assert!(replica.is_revoked(&user).await);
    assert!(!replica.is_revoked(&other).await);
}
