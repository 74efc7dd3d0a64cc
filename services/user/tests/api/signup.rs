//! Email verification and sign-up, with codes read out of a real SMTP server.

use std::time::Duration;

use shop_platform::grpc::error::RETRY_AFTER_METADATA;
use shop_proto::pb::user as pb;
use tonic::{Code, Request};

use crate::helpers::{PASSWORD, TestApp, code, spawn_app, spawn_app_with, unique_email};

fn confirm(email: &str, code: &str) -> pb::ConfirmEmailVerificationRequest {
    pb::ConfirmEmailVerificationRequest {
        email: email.to_owned(),
        code: code.to_owned(),
    }
}

fn wrong(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

#[tokio::test]
async fn the_sign_up_journey_reads_the_code_from_the_mail() {
    let app = spawn_app().await;
    let email = unique_email();
    // Upper case in, lower case stored.
    app.users
        .clone()
        .start_email_verification(pb::StartEmailVerificationRequest {
            email: email.to_uppercase(),
        })
        .await
        .unwrap();

    let mail = app.smtp.next_mail_to(&email).await;
    assert_eq!(mail.content_type, "multipart/alternative");
    let code = mail.code();
    assert!(
        mail.html.as_deref().unwrap().contains(&code),
        "the HTML part carries the code too"
    );

    let confirmed = app
        .users
        .clone()
        .confirm_email_verification(confirm(&email, &code))
        .await
        .unwrap()
        .into_inner();
    assert!(confirmed.expires_in_seconds > 0);
    let user = app
        .users
        .clone()
        .sign_up(TestApp::sign_up_request(&confirmed.verification_token, &email))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.email, email);
    assert_eq!(user.role, shop_proto::pb::common::Role::Customer as i32);

    let tokens = app.login(&email.to_uppercase(), PASSWORD).await.unwrap();
    let signed_in = app.user_with(email.clone(), PASSWORD.to_owned(), tokens).await;
    assert_eq!(app.me(&signed_in.caller).await.unwrap(), user);
}

#[tokio::test]
async fn a_registered_address_gets_a_notice_and_the_same_reply() {
    let app = spawn_app_with(&[("SHOP_VERIFICATION_RESEND_INTERVAL", "100ms")]).await;
    let email = unique_email();
    app.sign_up(&email).await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    let reply = app
        .users
        .clone()
        .start_email_verification(pb::StartEmailVerificationRequest { email: email.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply, pb::StartEmailVerificationResponse {});
    let notice = app.smtp.next_mail_to(&email).await;
    assert!(notice.subject.contains("already have"), "{}", notice.subject);
    assert!(!notice.text.unwrap().contains("code is"));
}

#[tokio::test]
async fn a_code_expires_after_its_ttl() {
    let app = spawn_app_with(&[("SHOP_VERIFICATION_CODE_TTL", "1s")]).await;
    let email = unique_email();
    let right = app.code_for(&email).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let error = app
        .users
        .clone()
        .confirm_email_verification(confirm(&email, &right))
        .await
        .unwrap_err();
    assert_eq!((error.code(), code(&error)), (Code::InvalidArgument, "invalid_code"));
}

#[tokio::test]
async fn five_wrong_codes_burn_the_code() {
    let app = spawn_app().await;
    let email = unique_email();
    let right = app.code_for(&email).await;
    for _ in 0..5 {
        let error = app
            .users
            .clone()
            .confirm_email_verification(confirm(&email, &wrong(&right)))
            .await
            .unwrap_err();
        assert_eq!((error.code(), code(&error)), (Code::InvalidArgument, "invalid_code"));
    }
    let error = app
        .users
        .clone()
        .confirm_email_verification(confirm(&email, &right))
        .await
        .unwrap_err();
    assert_eq!(code(&error), "invalid_code", "the right code no longer works");
}

#[tokio::test]
async fn codes_are_rate_limited_per_address_and_per_client() {
    let app = spawn_app_with(&[("SHOP_VERIFICATION_CLIENT_HOURLY_LIMIT", "3")]).await;
    let start = |email: &str, client: &str| {
        let mut request = Request::new(pb::StartEmailVerificationRequest {
            email: email.to_owned(),
        });
        request
            .metadata_mut()
            .insert("x-shop-client-ip", client.parse().unwrap());
        let mut users = app.users.clone();
        async move { users.start_email_verification(request).await }
    };

    let email = unique_email();
    start(&email, "198.51.100.1").await.unwrap();
    let error = start(&email, "198.51.100.2").await.unwrap_err();
    assert_eq!(
        (error.code(), code(&error)),
        (Code::ResourceExhausted, "too_many_requests")
    );
    let retry_after: u64 = error
        .metadata()
        .get(RETRY_AFTER_METADATA)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // The refused request sent nothing.
    app.smtp.next_mail_to(&email).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.smtp.count_to(&email), 0);

    // One client asking for many addresses is stopped too.
    start(&unique_email(), "198.51.100.1").await.unwrap();
    start(&unique_email(), "198.51.100.1").await.unwrap();
    let error = start(&unique_email(), "198.51.100.1").await.unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn a_verification_token_works_once_and_for_its_address_only() {
    let app = spawn_app_with(&[("SHOP_VERIFICATION_RESEND_INTERVAL", "100ms")]).await;
    let email = unique_email();
    let token = app.verification_token(&email).await;

    // For another address: refused, and the token stays usable.
    let other = unique_email();
    let error = app
        .users
        .clone()
        .sign_up(TestApp::sign_up_request(&token, &other))
        .await
        .unwrap_err();
    assert_eq!(
        (error.code(), code(&error)),
        (Code::InvalidArgument, "invalid_verification_token")
    );

    app.users
        .clone()
        .sign_up(TestApp::sign_up_request(&token, &email))
        .await
        .unwrap();
    let error = app
        .users
        .clone()
        .sign_up(TestApp::sign_up_request(&token, &email))
        .await
        .unwrap_err();
    assert_eq!(code(&error), "invalid_verification_token");
}

#[tokio::test]
async fn an_address_signs_up_once() {
    let app = spawn_app_with(&[("SHOP_VERIFICATION_RESEND_INTERVAL", "100ms")]).await;
    let email = unique_email();
    // Two tokens for one address, before it has an account.
    let first = app.verification_token(&email).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = app.verification_token(&email).await;

    app.users
        .clone()
        .sign_up(TestApp::sign_up_request(&first, &email))
        .await
        .unwrap();
    let error = app
        .users
        .clone()
        .sign_up(TestApp::sign_up_request(&second, &email))
        .await
        .unwrap_err();
    assert_eq!((error.code(), code(&error)), (Code::AlreadyExists, "email_taken"));
}

#[tokio::test]
async fn bad_sign_up_input_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let email = unique_email();
    let token = app.verification_token(&email).await;
    let valid = TestApp::sign_up_request(&token, &email);
    let long = |n| "x".repeat(n);
    let cases: Vec<(pb::SignUpRequest, &str)> = vec![
        (
            pb::SignUpRequest {
                password: "short1!".into(),
                ..valid.clone()
            },
            "weak_password",
        ),
        (
            pb::SignUpRequest {
                password: "no digits here!".into(),
                ..valid.clone()
            },
            "weak_password",
        ),
        (
            pb::SignUpRequest {
                password: format!("a1!{}", long(126)),
                ..valid.clone()
            },
            "weak_password",
        ),
        (
            pb::SignUpRequest {
                name: "  ".into(),
                ..valid.clone()
            },
            "invalid_argument",
        ),
        (
            pb::SignUpRequest {
                name: long(101),
                ..valid.clone()
            },
            "invalid_argument",
        ),
        (
            pb::SignUpRequest {
                phone: long(33),
                ..valid.clone()
            },
            "invalid_argument",
        ),
        (
            pb::SignUpRequest {
                address: long(501),
                ..valid.clone()
            },
            "invalid_argument",
        ),
        (
            pb::SignUpRequest {
                email: "not-an-address".into(),
                ..valid.clone()
            },
            "invalid_argument",
        ),
        (
            pb::SignUpRequest {
                verification_token: "made-up".into(),
                ..valid.clone()
            },
            "invalid_verification_token",
        ),
    ];
    for (request, expected) in cases {
        let error = app.users.clone().sign_up(request).await.unwrap_err();
        assert_eq!((error.code(), code(&error)), (Code::InvalidArgument, expected));
    }
    // Malformed addresses are refused before anything is sent.
    for email in ["", "plain", "a@b", &format!("{}@example.com", long(250))] {
        let error = app
            .users
            .clone()
            .start_email_verification(pb::StartEmailVerificationRequest {
                email: email.to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            (error.code(), code(&error)),
            (Code::InvalidArgument, "invalid_argument")
        );
    }
    // Nothing changed: the token still signs the address up.
    app.users.clone().sign_up(valid).await.unwrap();
}
