//! Reservations per second through RabbitMQ into PostgreSQL, next to the ceiling PostgreSQL
//! itself gives for the bare conditional update on one row (measured with `pgbench`, on the same
//! database). See docs/benchmarks.md.
//!
//! ```text
//! cargo run --release -p shop-catalog --example reservation_bench -- --help
//! ```
//!
//! Each run publishes `--orders` single-unit ReserveStock messages to a fresh durable queue,
//! then starts the stock worker (as the service runs it, outbox relay included) and times how
//! long it takes until every reservation is committed. Two scenarios: every order on one hot
//! product, and orders spread over 1,000 products. The servers come from
//! `SHOP_TEST_DATABASE_URL` and `SHOP_TEST_AMQP_URL` (loopback defaults); a fresh database is
//! created for the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};
use shop_catalog::{StockConfig, entity::product, migration::Migrator, stock::StockWorker};
use shop_platform::{
    db::{self, DatabaseConfig},
    outbox::{OutboxRelay, RelayOptions},
    queue::{self, Message, WorkQueue, bundle},
    testing,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const HELP: &str = "\
reservation_bench: reservations per second through RabbitMQ into PostgreSQL, and the bare
PostgreSQL ceiling for a conditional update of one row (pgbench).

USAGE: cargo run --release -p shop-catalog --example reservation_bench -- [OPTIONS]

OPTIONS:
  --orders N           orders per run and scenario            [20000]
  --runs N             runs per scenario (medians reported)   [3]
  --workers N          consumers of the reserve queue         [2]
  --batch N            deliveries per transaction             [200]
  --products N         products of the spread scenario        [1000]
  --pgbench-clients N  pgbench -c                             [8]
  --pgbench-seconds N  pgbench -T                             [10]
  -h, --help           this text

ENVIRONMENT: SHOP_TEST_DATABASE_URL [postgres://postgres@127.0.0.1:5432/postgres],
SHOP_TEST_AMQP_URL [amqp://guest:guest@127.0.0.1:5672/%2f]; needs pgbench on PATH.";

#[derive(Clone, Debug)]
struct Options {
    orders: usize,
    runs: usize,
    workers: usize,
    batch: usize,
    products: usize,
    pgbench_clients: usize,
    pgbench_seconds: usize,
}

fn parse_args() -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        orders: 20_000,
        runs: 3,
        workers: 2,
        batch: 200,
        products: 1_000,
        pgbench_clients: 8,
        pgbench_seconds: 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value: usize = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag} needs a whole number"))?;
        let slot = match flag.as_str() {
            "--orders" => &mut options.orders,
            "--runs" => &mut options.runs,
            "--workers" => &mut options.workers,
            "--batch" => &mut options.batch,
            "--products" => &mut options.products,
            "--pgbench-clients" => &mut options.pgbench_clients,
            "--pgbench-seconds" => &mut options.pgbench_seconds,
            other => bail!("unknown option {other}; see --help"),
        };
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
        *slot = value;
    }
    Ok(Some(options))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(options) = parse_args()? else {
        println!("{HELP}");
        return Ok(());
    };
    let url = testing::create_postgres_database().await;
    let database = DatabaseConfig::new(url.clone(), "catalog");
    let db = db::connect(&database).await?;
    db::migrate::<Migrator>(&db, &database.schema).await?;
    let queue = queue::from_url(&testing::amqp_url()).await?;
    println!(
        "orders per run: {}, runs: {}, workers: {}, batch: {}, database: {}",
        options.orders,
        options.runs,
        options.workers,
        options.batch,
        testing::database_name(&url).unwrap_or_default()
    );

    let mut hot = Vec::new();
    let mut spread = Vec::new();
    for run in 1..=options.runs {
        let rate = scenario(&db, &queue, &options, 1).await?;
        println!("run {run}: one hot product      {rate:>9.0} reservations/s");
        hot.push(rate);
        let rate = scenario(&db, &queue, &options, options.products).await?;
        println!(
            "run {run}: {} products      {rate:>9.0} reservations/s",
            options.products
        );
        spread.push(rate);
    }

    let ceiling_product = products(&db, 1, i64::MAX / 2).await?[0];
    let mut ceiling = Vec::new();
    for run in 1..=options.runs {
        let tps = pgbench(&url, ceiling_product, &options)?;
        println!("run {run}: pgbench, one row      {tps:>9.0} updates/s");
        ceiling.push(tps);
    }

    let (hot, spread, ceiling) = (median(hot), median(spread), median(ceiling));
    println!();
    println!(
        "median, one hot product:        {hot:>9.0} reservations/s  ratio to pgbench {:.2}",
        hot / ceiling
    );
    println!(
        "median, {} products:          {spread:>9.0} reservations/s  ratio to pgbench {:.2}",
        options.products,
        spread / ceiling
    );
    println!("median, pgbench ceiling, 1 row: {ceiling:>9.0} updates/s");
    Ok(())
}

/// One timed run over `count` products: publish, then consume until every order is applied.
async fn scenario(
    db: &DatabaseConnection,
    queue: &Arc<dyn WorkQueue>,
    options: &Options,
    count: usize,
) -> anyhow::Result<f64> {
    let orders = options.orders;
    let stock = i64::try_from(orders)?;
    let ids = products(db, count, stock).await?;
    let prefix = testing::unique_name("bench");
    let config = StockConfig {
        queues: shop_catalog::StockQueues::prefixed(&prefix),
        workers: options.workers,
        batch_size: options.batch,
        linger: Duration::from_millis(5),
    };
    let relay = OutboxRelay::new(db.clone(), queue.clone(), RelayOptions::default());
    let worker = StockWorker::new(db.clone(), queue.clone(), config.clone()).waking(relay.clone());
    worker.declare().await?;

    // The queue is filled first, so that the run measures the worker, not the publisher.
    let messages: Vec<Message> = (0..orders)
        .map(|n| {
            let product = ids[n % ids.len()];
            let order = Uuid::now_v7();
            let payload = prost::Message::encode_to_vec(&shop_proto::pb::events::ReserveStock {
                order_id: order.to_string(),
                lines: vec![shop_proto::pb::events::StockLine {
                    product_id: product.to_string(),
                    quantity: 1,
                }],
            });
            Message {
                id: Uuid::now_v7().to_string(),
                kind: shop_proto::message_type::<shop_proto::pb::events::ReserveStock>(),
                payload,
                headers: Default::default(),
            }
        })
        .collect();
    for chunk in messages.chunks(1_000) {
        queue.publish(&config.queues.reserve, chunk.to_vec()).await?;
    }

    let initial = stock * i64::try_from(ids.len())?;
    let target = initial - stock;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let relaying = tokio::spawn(relay.run(shutdown.clone()));
    let working = tokio::spawn(worker.run(shutdown.clone()));
    let deadline = started + Duration::from_secs(120);
    while total_stock(db, &ids).await? > target {
        if Instant::now() > deadline {
            bail!("the run did not finish within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();

    // Untimed: every answer reaches the results queue, which is left empty.
    let mut results = queue.consume(&config.queues.results, 1_000).await?;
    let mut answered = 0;
    tokio::time::timeout(Duration::from_secs(120), async {
        while answered < orders {
            for delivery in results.next_batch(1_000, Duration::from_millis(20)).await? {
                answered += bundle::unbundle(delivery.message.clone())?.len();
                delivery.ack().await?;
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("waiting for the answers")??;
    shutdown.cancel();
    working.await??;
    relaying.await?;
    drop(results);
    // Runs leave no queues behind.
    testing::delete_queues(&[config.queues.reserve, config.queues.release, config.queues.results]).await;
    Ok(orders as f64 / elapsed.as_secs_f64())
}

/// Creates `count` products with `stock` each.
async fn products(db: &DatabaseConnection, count: usize, stock: i64) -> anyhow::Result<Vec<Uuid>> {
    let now = chrono::Utc::now();
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(500) {
        let rows = chunk.iter().map(|id| product::ActiveModel {
            id: sea_orm::Set(*id),
            seller_id: sea_orm::Set(Uuid::now_v7()),
            name: sea_orm::Set("Bench product".into()),
            description: sea_orm::Set(String::new()),
            price_amount: sea_orm::Set(1_000),
            currency: sea_orm::Set("KRW".into()),
            stock: sea_orm::Set(stock),
            visible: sea_orm::Set(true),
            created_at: sea_orm::Set(now),
            updated_at: sea_orm::Set(now),
            deleted_at: sea_orm::Set(None),
        });
        product::Entity::insert_many(rows).exec(db).await?;
    }
    Ok(ids)
}

async fn total_stock(db: &DatabaseConnection, ids: &[Uuid]) -> anyhow::Result<i64> {
    let total: Option<Option<i64>> = product::Entity::find()
        .select_only()
        .column_as(Expr::cust("CAST(SUM(stock) AS BIGINT)"), "total")
        .filter(product::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .one(db)
        .await?;
    Ok(total.flatten().unwrap_or(0))
}

/// pgbench's tps for the bare conditional update of one row, as the worker's update looks.
fn pgbench(url: &str, product: Uuid, options: &Options) -> anyhow::Result<f64> {
    let script = testing::pgbench::stock_update_script(&product.to_string());
    testing::pgbench::tps(url, &script, options.pgbench_clients, options.pgbench_seconds as u64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}
