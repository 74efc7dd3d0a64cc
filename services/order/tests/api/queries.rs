//! Reading orders: one's own only (another user's is NOT_FOUND), admins see all, lists newest
//! first with keyset pagination.

use std::time::Duration;

use shop_platform::grpc::identity::Role;
use shop_proto::pb::{
    common::PageRequest,
    order::{ListOrdersRequest, Order},
};
use tonic::Code;

use crate::helpers::{TestMesh, caller, code_of, signed, spawn};

async fn list(
    mesh: &TestMesh,
    who: &shop_platform::grpc::identity::Caller,
    request: ListOrdersRequest,
) -> Result<(Vec<Order>, String), tonic::Status> {
    let reply = mesh.client().list_orders(signed(request, who)).await?.into_inner();
    Ok((reply.orders, reply.page.unwrap_or_default().next_cursor))
}

fn page(limit: u32, cursor: &str) -> Option<PageRequest> {
    Some(PageRequest {
        limit,
        cursor: cursor.into(),
    })
}

#[tokio::test]
async fn another_users_order_is_not_found_and_admins_see_everything() {
    let mesh = spawn().await;
    let product = mesh.product(1_000, 10).await;
    let owner = caller(Role::Customer);
    let placed = mesh.place(&owner, "mine", &[(product, 1)]).await.unwrap();

    let stranger = caller(Role::Seller);
    let status = mesh.get(&stranger, &placed.id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let unknown = mesh.get(&owner, &uuid::Uuid::now_v7().to_string()).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "looks the same as an unknown order");
    assert_eq!(
        mesh.get(&owner, "not-an-id").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let (theirs, _) = list(&mesh, &stranger, ListOrdersRequest::default()).await.unwrap();
    assert!(theirs.is_empty());
    let named = ListOrdersRequest {
        user_id: owner.user_id.to_string(),
        ..Default::default()
    };
    let denied = list(&mesh, &stranger, named.clone()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let admin = caller(Role::Admin);
    assert_eq!(mesh.get(&admin, &placed.id).await.unwrap().id, placed.id);
    let (all, _) = list(&mesh, &admin, ListOrdersRequest::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    let (owners, _) = list(&mesh, &admin, named).await.unwrap();
    assert_eq!(owners.len(), 1);
    let malformed = ListOrdersRequest {
        user_id: "someone".into(),
        ..Default::default()
    };
    assert_eq!(
        list(&mesh, &admin, malformed).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn lists_are_newest_first_in_pages_that_neither_repeat_nor_skip() {
    let mesh = spawn().await;
    let product = mesh.product(1_000, 100).await;
    let customer = caller(Role::Customer);
    let mut placed = Vec::new();
    for n in 0..5 {
        placed.push(
            mesh.place(&customer, &format!("o{n}"), &[(product, 1)])
                .await
                .unwrap()
                .id,
        );
        mesh.clock.advance(Duration::from_secs(1));
    }
    // Two placed at the same instant are ordered by id.
    placed.push(mesh.place(&customer, "same-a", &[(product, 1)]).await.unwrap().id);
    placed.push(mesh.place(&customer, "same-b", &[(product, 1)]).await.unwrap().id);
    let other = caller(Role::Customer);
    mesh.place(&other, "o0", &[(product, 1)]).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let request = ListOrdersRequest {
            page: page(3, &cursor),
            ..Default::default()
        };
        let (orders, next) = list(&mesh, &customer, request).await.unwrap();
        assert!(orders.len() <= 3);
        seen.extend(orders.into_iter().map(|order| order.id));
        if next.is_empty() {
            break;
        }
        cursor = next;
        // An order placed between pages shows on no later page of this listing.
        if seen.len() == 3 {
            mesh.clock.advance(Duration::from_secs(1));
            mesh.place(&customer, "meanwhile", &[(product, 1)]).await.unwrap();
        }
    }
    let mut expected = placed.clone();
    let same_instant = expected.split_off(5);
    let mut newest_first: Vec<String> = same_instant.into_iter().rev().collect();
    newest_first.extend(expected.into_iter().rev());
    assert_eq!(seen, newest_first);

    let (mine, _) = list(
        &mesh,
        &customer,
        ListOrdersRequest {
            page: page(100, ""),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(mine.len(), 8);
    let too_many = list(
        &mesh,
        &customer,
        ListOrdersRequest {
            page: page(101, ""),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(too_many.unwrap_err().code(), Code::InvalidArgument);

    // A cursor is bound to its list: the admin's list of everyone refuses the customer's.
    let first = list(
        &mesh,
        &customer,
        ListOrdersRequest {
            page: page(1, ""),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let admin = caller(Role::Admin);
    let foreign = list(
        &mesh,
        &admin,
        ListOrdersRequest {
            page: page(1, &first.1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        code_of(&foreign.unwrap_err()),
        (Code::InvalidArgument, "invalid_cursor".into())
    );
}
