//! Retention of applied releases: old releases of orders with nothing left to give back are
//! deleted and a repeat of one gives back nothing; releases of orders still holding stock are
//! kept whatever their age (a repeat must not give an item back twice), as are young ones.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use shop_catalog::{CatalogRetention, entity::release, retention};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{Broker, TestApp, release_message, spawn_app_on, spawn_embedded_app};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prunes_only_releases_that_cannot_give_back_twice() {
    let app = spawn_app_on(Broker::Rabbit, &[]).await;
    prunes_only_releases_that_cannot_give_back_twice(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prunes_only_releases_that_cannot_give_back_twice() {
    let app = spawn_embedded_app().await;
    prunes_only_releases_that_cannot_give_back_twice(&app).await;
    app.stop().await;
}

async fn prunes_only_releases_that_cannot_give_back_twice(app: &TestApp) {
    let product = app.product(10).await;
    // A: 3 reserved, one item (1 unit) returned: still holds 2.
    // B: 2 reserved, then cancelled: holds nothing.
    // C: cancelled before its reservation arrived: never held anything.
    // D: 1 reserved, then cancelled: holds nothing, but only just.
    let (a, b, c, d, item) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    app.reserve(a, &[(product, 3)]).await;
    app.reserve(b, &[(product, 2)]).await;
    app.reserve(d, &[(product, 1)]).await;
    app.wait_for_reservations(3, WAIT).await;
    app.publish_release(vec![
        release_message(a, item, &[(product, 1)]),
        release_message(b, b, &[(product, 2)]),
        release_message(c, c, &[(product, 4)]),
        release_message(d, d, &[(product, 1)]),
    ])
    .await;
    app.wait_for_releases(4, WAIT).await;
    app.wait_for_inbox(7, WAIT).await;
    assert_eq!(app.stock(product).await, 8);

    // A, B and C were released weeks ago (the default age is 30 days); D just now.
    release::Entity::update_many()
        .col_expr(
            release::Column::CreatedAt,
            Expr::value(Utc::now() - chrono::Duration::days(40)),
        )
        .filter(release::Column::OrderId.is_in([a, b, c]))
        .exec(&app.db)
        .await
        .unwrap();
    let sweeper = retention::sweeper(app.db.clone(), &CatalogRetention::default());
    let swept = sweeper.sweep(Utc::now(), &CancellationToken::new()).await.unwrap();
    let deleted: u64 = swept.iter().filter(|s| s.table == "releases").map(|s| s.deleted).sum();
    assert_eq!(deleted, 2, "{swept:?}");
    let mut kept: Vec<Uuid> = release::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.order_id)
        .collect();
    kept.sort();
    let mut expected = vec![a, d];
    expected.sort();
    assert_eq!(kept, expected, "A still holds stock; D is young");

    // The same releases again, under new message ids (past the inbox): A's row stops its
    // repeat; B and C have nothing to give back, row or not.
    app.publish_release(vec![
        release_message(a, item, &[(product, 1)]),
        release_message(b, b, &[(product, 2)]),
        release_message(c, c, &[(product, 4)]),
    ])
    .await;
    app.wait_for_inbox(10, WAIT).await;
    assert_eq!(app.stock(product).await, 8, "nothing given back twice");
    app.assert_invariant(&[(product, 10)]).await;
}
