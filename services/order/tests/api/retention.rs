//! Retention of the order service's own tables: idempotency keys and finished payment tasks
//! older than their age are deleted, younger ones stay and keep answering, and claims still in
//! progress are never touched.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use shop_order::{
    entity::{idempotency, payment_task},
    retention,
};
use shop_platform::grpc::identity::Role;
use shop_proto::pb::order::OrderStatus;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{Options, TestMesh, caller, spawn, spawn_with};

fn days_ago(days: i64) -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days)
}

#[tokio::test]
async fn old_keys_and_finished_tasks_go_and_young_ones_still_answer() {
    old_keys_and_finished_tasks_go(spawn().await).await;
}

#[tokio::test]
async fn sqlite_old_keys_and_finished_tasks_go_and_young_ones_still_answer() {
    old_keys_and_finished_tasks_go(
        spawn_with(Options {
            embedded: true,
            ..Options::default()
        })
        .await,
    )
    .await;
}

async fn old_keys_and_finished_tasks_go(mesh: TestMesh) {
    let product = mesh.product(1_000, 10).await;
    let customer = caller(Role::Customer);
    let old = mesh.place(&customer, "last-month", &[(product, 1)]).await.unwrap();
    let young = mesh.place(&customer, "just-now", &[(product, 1)]).await.unwrap();
    mesh.wait_for(&customer, &old.id, OrderStatus::Paid).await;
    mesh.wait_for(&customer, &young.id, OrderStatus::Paid).await;
    let (old_id, young_id) = (Uuid::parse_str(&old.id).unwrap(), Uuid::parse_str(&young.id).unwrap());

    // The first order and its capture are from weeks ago (ages by default: keys 7 days,
    // finished payment tasks 30 days).
    idempotency::Entity::update_many()
        .col_expr(idempotency::Column::CreatedAt, Expr::value(days_ago(40)))
        .filter(idempotency::Column::OrderId.eq(old_id))
        .exec(mesh.db())
        .await
        .unwrap();
    payment_task::Entity::update_many()
        .col_expr(payment_task::Column::CompletedAt, Expr::value(Some(days_ago(31))))
        .filter(payment_task::Column::OrderId.eq(old_id))
        .exec(mesh.db())
        .await
        .unwrap();
    // Two claims that never got an order: one left by a process that died long ago, one
    // taken over just now after a long pause (its lease still runs).
    let claim = |key: &str, claimed_until| idempotency::ActiveModel {
        user_id: Set(customer.user_id),
        key: Set(key.to_owned()),
        request_hash: Set("h".into()),
        order_id: Set(None),
        claimed_until: Set(claimed_until),
        created_at: Set(days_ago(9)),
    };
    idempotency::Entity::insert_many([
        claim("abandoned", days_ago(8)),
        claim("in-progress", Utc::now() + chrono::Duration::seconds(15)),
    ])
    .exec(mesh.db())
    .await
    .unwrap();

    let sweeper = retention::sweeper(mesh.db().clone(), &mesh.config.retention);
    let swept = sweeper.sweep(Utc::now(), &CancellationToken::new()).await.unwrap();
    let deleted = |table| {
        swept
            .iter()
            .filter(|s| s.table == table)
            .map(|s| s.deleted)
            .sum::<u64>()
    };
    assert_eq!(deleted("idempotency_keys"), 2, "{swept:?}");
    assert_eq!(deleted("payment_tasks"), 1, "{swept:?}");

    let keys: Vec<String> = idempotency::Entity::find()
        .filter(idempotency::Column::UserId.eq(customer.user_id))
        .all(mesh.db())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.key)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&"just-now".to_owned()) && keys.contains(&"in-progress".to_owned()));
    let tasks: Vec<Uuid> = payment_task::Entity::find()
        .all(mesh.db())
        .await
        .unwrap()
        .into_iter()
        .map(|task| task.order_id)
        .collect();
    assert_eq!(tasks, vec![young_id]);

    // The young key still answers with its order; the order behind the old key is untouched.
    let retried = mesh.place(&customer, "just-now", &[(product, 1)]).await.unwrap();
    assert_eq!(retried.id, young.id);
    assert_eq!(mesh.get(&customer, &old.id).await.unwrap().status(), OrderStatus::Paid);
    // The claim in progress still holds its key: no other order is placed under it.
    let held = mesh.place(&customer, "in-progress", &[(product, 1)]).await.unwrap_err();
    assert_eq!(held.code(), tonic::Code::AlreadyExists, "{held:?}");
    mesh.expect_stock(product, 10, 8).await;

    // Beyond the age a key is forgotten: the same request places a new order.
    let again = mesh.place(&customer, "last-month", &[(product, 1)]).await.unwrap();
    assert_ne!(again.id, old.id);
}
