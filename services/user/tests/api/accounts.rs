//! Profiles and administration: updates with bad input changing nothing, the bootstrapped admin,
//! listing pages, role changes and the last-admin guard.

use shop_platform::grpc::identity::{Caller, Role};
use shop_proto::pb::{
    common::{PageRequest, Role as RolePb},
    user as pb,
};
use tonic::Code;

use crate::helpers::{TestApp, as_caller, code, spawn_app, spawn_app_with};

const ADMIN_EMAIL: &str = "root@shop.example.com";
const ADMIN_PASSWORD: &str = "b00tstrap-Admin";

async fn update(app: &TestApp, caller: &Caller, request: pb::UpdateProfileRequest) -> Result<pb::User, tonic::Status> {
    app.users
        .clone()
        .update_profile(as_caller(caller, request))
        .await
        .map(|reply| reply.into_inner().user.unwrap())
}

#[tokio::test]
async fn profiles_update_partially_and_bad_input_changes_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let before = app.me(&user.caller).await.unwrap();

    let after = update(
        &app,
        &user.caller,
        pb::UpdateProfileRequest {
            name: Some("  Grace Hopper ".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(after.name, "Grace Hopper");
    assert_eq!((&after.phone, &after.address), (&before.phone, &before.address));

    let long = |n| Some("x".repeat(n));
    for request in [
        pb::UpdateProfileRequest {
            name: Some(String::new()),
            ..Default::default()
        },
        pb::UpdateProfileRequest {
            name: long(101),
            ..Default::default()
        },
        pb::UpdateProfileRequest {
            phone: long(33),
            ..Default::default()
        },
        pb::UpdateProfileRequest {
            name: Some("ok".into()),
            address: long(501),
            phone: None,
        },
    ] {
        let error = update(&app, &user.caller, request).await.unwrap_err();
        assert_eq!(
            (error.code(), code(&error)),
            (Code::InvalidArgument, "invalid_argument")
        );
    }
    assert_eq!(app.me(&user.caller).await.unwrap(), after, "nothing changed");

    let error = app.users.clone().get_me(pb::GetMeRequest {}).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn users_only_ever_see_their_own_profile() {
    let app = spawn_app().await;
    let (ada, bob) = (app.new_user().await, app.new_user().await);
    assert_eq!(app.me(&ada.caller).await.unwrap().email, ada.email);
    assert_eq!(app.me(&bob.caller).await.unwrap().email, bob.email);
    update(
        &app,
        &bob.caller,
        pb::UpdateProfileRequest {
            name: Some("Bob".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(app.me(&ada.caller).await.unwrap().name, "Ada Lovelace");
    // Admin-only rpcs refuse customers.
    let error = app
        .users
        .clone()
        .list_users(as_caller(&bob.caller, pb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = app
        .users
        .clone()
        .set_user_role(as_caller(
            &bob.caller,
            pb::SetUserRoleRequest {
                user_id: bob.caller.user_id.to_string(),
                role: RolePb::Admin.into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn the_bootstrapped_admin_lists_users_and_changes_roles() {
    let app = spawn_app_with(&[
        ("SHOP_ADMIN_EMAIL", ADMIN_EMAIL),
        ("SHOP_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ])
    .await;
    let tokens = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let admin = app
        .user_with(ADMIN_EMAIL.to_owned(), ADMIN_PASSWORD.to_owned(), tokens)
        .await;
    assert_eq!(admin.caller.role, Role::Admin);
    let (ada, bob) = (app.new_user().await, app.new_user().await);

    // Pages of 2, newest first, following the cursors.
    let seen = app.all_user_emails(&admin.caller, 2).await;
    assert_eq!(seen, [bob.email.clone(), ada.email.clone(), ADMIN_EMAIL.to_owned()]);
    for page in [
        PageRequest {
            limit: 101,
            cursor: String::new(),
        },
        PageRequest {
            limit: 1,
            cursor: "forged".into(),
        },
    ] {
        let error = app
            .users
            .clone()
            .list_users(as_caller(&admin.caller, pb::ListUsersRequest { page: Some(page) }))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
    }

    let set_role = |caller: Caller, user_id: String, role: RolePb| {
        let mut users = app.users.clone();
        async move {
            users
                .set_user_role(as_caller(
                    &caller,
                    pb::SetUserRoleRequest {
                        user_id,
                        role: role.into(),
                    },
                ))
                .await
                .map(|reply| reply.into_inner().user.unwrap())
        }
    };
    // The only admin cannot step down.
    let error = set_role(admin.caller.clone(), admin.caller.user_id.to_string(), RolePb::Customer)
        .await
        .unwrap_err();
    assert_eq!((error.code(), code(&error)), (Code::FailedPrecondition, "last_admin"));

    let promoted = set_role(admin.caller.clone(), ada.caller.user_id.to_string(), RolePb::Seller)
        .await
        .unwrap();
    assert_eq!(promoted.role, RolePb::Seller as i32);
    assert!(app.is_revoked(&ada).await, "no token keeps the old role");
    let tokens = app.login(&ada.email, &ada.password).await.unwrap();
    assert_eq!(app.verify(&tokens.access_token).await["role"], "seller");

    for (user_id, role, expected) in [
        (
            ada.caller.user_id.to_string(),
            RolePb::Unspecified,
            Code::InvalidArgument,
        ),
        ("not-a-uuid".to_owned(), RolePb::Admin, Code::InvalidArgument),
        (uuid::Uuid::now_v7().to_string(), RolePb::Admin, Code::NotFound),
    ] {
        let error = set_role(admin.caller.clone(), user_id, role).await.unwrap_err();
        assert_eq!(error.code(), expected);
    }

    // With a second admin, the first may go.
    set_role(admin.caller.clone(), bob.caller.user_id.to_string(), RolePb::Admin)
        .await
        .unwrap();
    app.users
        .clone()
        .delete_account(as_caller(
            &admin.caller,
            pb::DeleteAccountRequest {
                password: ADMIN_PASSWORD.to_owned(),
            },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn signing_keys_come_from_the_environment() {
    let seed = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    let keys = format!("2026-a={seed},2025-z={seed}");
    let app = spawn_app_with(&[("SHOP_JWT_SIGNING_KEYS", &keys)]).await;
    let published = app.signing_keys().await;
    let kids: Vec<_> = published.iter().map(|key| key.kid.as_str()).collect();
    assert_eq!(kids, ["2026-a", "2025-z"]);
    assert!(published[0].not_after.is_none() && published[1].not_after.is_some());
    assert!(
        published
            .iter()
            .all(|key| key.public_key.len() == 32 && key.algorithm == "EdDSA")
    );

    let user = app.new_user().await;
    let header = jsonwebtoken::decode_header(&user.tokens.access_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("2026-a"));
}
