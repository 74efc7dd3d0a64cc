//! `listing`: the product list as the catalog grows. For each size of `--sizes`, smallest
//! first, the run's catalog is grown to that many products, then listed for `--duration` the
//! ways a shop front lists: pages walked by cursor, a word searched, a price band. Every
//! request asks for a page the edge has not kept (the spawned shop runs without the edge
//! cache, and the filters and page sizes are drawn at random), so each one reaches the catalog
//! and its database. The report gives each way's p99 at each size, and the ratio of the
//! largest size's p99 to the smallest's: flat listing is a ratio near 1.
//!
//! The products are written straight into the run's PostgreSQL database (`catalog.products`,
//! many rows a statement): through the REST edge a million products would take hours. They
//! are shaped like real ones: a hundred sellers, one in twenty hidden, one in a hundred
//! deleted, names and descriptions from a small vocabulary, prices spread over 1 to 1,000.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use rand::Rng as _;
use reqwest::Method;
use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection};
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    driver::{Limit, Workload},
    http::{self, Endpoint},
    options::Options,
    report::Report,
    stats::{Recorder, Summary},
    target::Shop,
};

/// Pages walked newest first, cursor after cursor, under a random price ceiling.
pub const PAGES: &str = "GET /products?max_price&cursor";
/// One word of the names or descriptions searched.
pub const SEARCH: &str = "GET /products?q";
/// A narrow band of prices.
pub const PRICE_BAND: &str = "GET /products?min_price&max_price";

/// The ways of listing, in the order of the report.
pub const SHAPES: [&str; 3] = [PAGES, SEARCH, PRICE_BAND];

/// Rows a seeding statement writes.
const SEED_CHUNK: u64 = 100_000;
/// Pages a walk follows before starting again with another filter.
const WALK_PAGES: u32 = 50;
/// The words names are made of; each is in a tenth of the names.
const NAME_WORDS: [&str; 10] = [
    "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "indigo", "juniper",
];
/// The words descriptions are made of; each is in an eighth of them.
const DESCRIPTION_WORDS: [&str; 8] = ["sturdy", "light", "warm", "bright", "quiet", "rugged", "smooth", "tiny"];
/// Prices are spread over `PRICE_BASE..PRICE_BASE + PRICE_SPREAD` (minor units).
const PRICE_BASE: i64 = 100;
const PRICE_SPREAD: i64 = 100_000;
/// The width of a price band: half a percent of the spread.
const BAND: i64 = PRICE_SPREAD / 200;

/// What the scenario found: per way of listing, its p99 at each size.
#[derive(Debug, Clone, Serialize)]
pub struct ListingFigures {
    /// The catalog sizes measured (products in the table, hidden and deleted ones included).
    pub sizes: Vec<u64>,
    /// Of them, the products listed (visible and not deleted) at each size.
    pub listed: Vec<u64>,
    /// Per way of listing.
    pub shapes: Vec<ShapeFigures>,
}

/// One way of listing across the sizes.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeFigures {
    /// The operation.
    pub operation: String,
    /// Its p99 at each size, in milliseconds, in the order of `sizes`.
    pub p99_ms: Vec<f64>,
    /// The largest size's p99 over the smallest's.
    pub ratio: f64,
}

impl ListingFigures {
    /// The figures of `per_size` (each size, the products listed at it, and what its phase
    /// measured).
    pub fn of(per_size: &[(u64, u64, Vec<Summary>)]) -> Self {
        let sizes = per_size.iter().map(|(size, _, _)| *size).collect();
        let listed = per_size.iter().map(|(_, listed, _)| *listed).collect();
        let shapes = SHAPES
            .iter()
            .map(|shape| {
                let p99_ms: Vec<f64> = per_size
                    .iter()
                    .map(|(_, _, summaries)| {
                        summaries
                            .iter()
                            .find(|summary| summary.operation == *shape)
                            .map_or(0.0, |summary| summary.p99_ms)
                    })
                    .collect();
                let ratio = match (p99_ms.first(), p99_ms.last()) {
                    (Some(first), Some(last)) if *first > 0.0 => last / first,
                    _ => 0.0,
                };
                ShapeFigures {
                    operation: (*shape).to_owned(),
                    p99_ms,
                    ratio,
                }
            })
            .collect();
        Self { sizes, listed, shapes }
    }

    /// The table of p99s by size.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from("\nlisting p99 (ms) by catalog size\n");
        let _ = write!(out, "{:<36}", "operation");
        for size in &self.sizes {
            let _ = write!(out, " {size:>10}");
        }
        let _ = writeln!(out, " {:>8}", "ratio");
        for shape in &self.shapes {
            let _ = write!(out, "{:<36}", shape.operation);
            for p99 in &shape.p99_ms {
                let _ = write!(out, " {p99:>10.2}");
            }
            let _ = writeln!(out, " {:>8.2}", shape.ratio);
        }
        let _ = writeln!(out, "ratio: p99 at the largest size over p99 at the smallest");
        out
    }
}

/// A virtual user: the walk it is on, if any.
#[derive(Debug, Default)]
pub struct Lister {
    walk: Option<Walk>,
}

/// A walk through the pages of one filter.
#[derive(Debug)]
struct Walk {
    /// The query without the cursor.
    query: String,
    cursor: String,
    pages: u32,
}

/// The listing load.
#[derive(Debug)]
struct Listing {
    endpoint: Endpoint,
    recorder: Arc<Recorder>,
}

impl Listing {
    /// The next page of the user's walk, or the first page of a new one.
    async fn walk(&self, lister: &mut Lister, intended: Instant) {
        let (walk, path) = match lister.walk.take() {
            Some(walk) if walk.pages < WALK_PAGES => {
                let cursor: String = url::form_urlencoded::byte_serialize(walk.cursor.as_bytes()).collect();
                let path = format!("{}&cursor={cursor}", walk.query);
                (walk, path)
            }
            _ => {
                let query = format!(
                    "/api/v1/products?limit={}&max_price={}",
                    rand::rng().random_range(10..=100),
                    rand::rng().random_range(PRICE_BASE + PRICE_SPREAD / 10..PRICE_BASE + PRICE_SPREAD)
                );
                let path = query.clone();
                (
                    Walk {
                        query,
                        cursor: String::new(),
                        pages: 0,
                    },
                    path,
                )
            }
        };
        let request = self.endpoint.request(Method::GET, &path, None);
        let Some((200, body)) = http::measure(&self.recorder, PAGES, request, intended).await else {
            return;
        };
        let next = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|page| page["next_cursor"].as_str().map(str::to_owned));
        if let Some(next) = next {
            lister.walk = Some(Walk {
                cursor: next,
                pages: walk.pages + 1,
                query: walk.query,
            });
        }
    }
}

impl Workload for Listing {
    type User = Lister;

    async fn step(&self, lister: &mut Lister, seq: u64, intended: Instant) {
        // Half the requests walk pages; a quarter search, a quarter ask for a price band.
        match seq % 4 {
            0 | 1 => self.walk(lister, intended).await,
            2 => {
                let path = {
                    let mut rng = rand::rng();
                    let word = if rng.random_bool(0.5) {
                        NAME_WORDS[rng.random_range(0..NAME_WORDS.len())]
                    } else {
                        DESCRIPTION_WORDS[rng.random_range(0..DESCRIPTION_WORDS.len())]
                    };
                    format!("/api/v1/products?q={word}&limit={}", rng.random_range(10..=100))
                };
                let request = self.endpoint.request(Method::GET, &path, None);
                http::measure(&self.recorder, SEARCH, request, intended).await;
            }
            _ => {
                let low = rand::rng().random_range(PRICE_BASE..PRICE_BASE + PRICE_SPREAD - BAND);
                let path = format!("/api/v1/products?min_price={low}&max_price={}&limit=20", low + BAND);
                let request = self.endpoint.request(Method::GET, &path, None);
                http::measure(&self.recorder, PRICE_BAND, request, intended).await;
            }
        }
    }
}

/// Runs the scenario on `shop`.
pub async fn run(shop: &Shop, http: &reqwest::Client, options: &Options) -> anyhow::Result<Report> {
    let database_url = shop
        .database_url
        .as_deref()
        .context("listing writes the products into the shop's database: with --url, give --database-url")?;
    let db = Database::connect(database_url)
        .await
        .context("connecting to the shop's database")?;
    let limit = Limit {
        duration: Some(options.duration),
        steps: None,
    };
    let mut per_size = Vec::new();
    let mut all = Vec::new();
    for &size in &options.sizes {
        let seeded = Instant::now();
        let grown = grow(&db, size).await?;
        let listed = count(
            &db,
            "SELECT count(*) AS n FROM catalog.products WHERE visible AND deleted_at IS NULL",
        )
        .await?;
        eprintln!(
            "listing: catalog grown to {size} products, {listed} of them listed ({grown} written in {:.1} s)",
            seeded.elapsed().as_secs_f64()
        );
        let recorder = Arc::new(Recorder::default());
        let listing = Arc::new(Listing {
            endpoint: Endpoint::new(http.clone(), &shop.origin),
            recorder: Arc::clone(&recorder),
        });
        let users = (0..options.connections).map(|_| Lister::default()).collect();
        let label = format!("listing {size}");
        let elapsed = super::timed(&label, listing, users, &recorder, options, limit).await;
        let summaries: Vec<Summary> = recorder
            .summarize(elapsed)
            .into_iter()
            .filter(|summary| summary.operation != "all")
            .collect();
        all.extend(summaries.iter().cloned().map(|mut summary| {
            summary.operation = format!("{} @{size}", summary.operation);
            summary
        }));
        per_size.push((size, listed, summaries));
    }
    db.close().await.ok();
    let mut report = Report::new(options, all);
    report.listing = Some(ListingFigures::of(&per_size));
    Ok(report)
}

/// Adds products to `catalog.products` until it holds `size` rows; how many it wrote.
async fn grow(db: &DatabaseConnection, size: u64) -> anyhow::Result<u64> {
    let have = count(db, "SELECT count(*) AS n FROM catalog.products").await?;
    if have > size {
        bail!("the catalog already holds {have} products, more than {size}");
    }
    let mut next = have + 1;
    while next <= size {
        let last = (next + SEED_CHUNK - 1).min(size);
        db.execute_unprepared(&seed_statement(next, last)).await?;
        next = last + 1;
    }
    // Fresh statistics, so the plans are those of a catalog of this size; and the vacuum that
    // so many inserted rows would otherwise start in the middle of the measurement.
    db.execute_unprepared("VACUUM ANALYZE catalog.products").await?;
    Ok(size - have)
}

/// The `n` of a `SELECT count(*) AS n …`.
async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<u64> {
    let n: i64 = db
        .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("a count")?
        .try_get("", "n")?;
    Ok(u64::try_from(n)?)
}

/// The INSERT of products numbered `first..=last`: product `n` is `n` seconds older than the
/// run's start, so each size's products come after (below) the previous size's in the list.
fn seed_statement(first: u64, last: u64) -> String {
    let names = sql_array(&NAME_WORDS);
    let descriptions = sql_array(&DESCRIPTION_WORDS);
    format!(
        "INSERT INTO catalog.products \
           (id, seller_id, name, description, price_amount, currency, stock, visible, created_at, updated_at, deleted_at) \
         SELECT gen_random_uuid(), \
           ('00000000-0000-4000-8000-' || lpad(to_hex(n % 100), 12, '0'))::uuid, \
           'Item ' || n || ' ' || ({names})[1 + n % {name_words}], \
           'A ' || ({descriptions})[1 + (n / {name_words}) % {description_words}] || ' thing, number ' || n, \
           {PRICE_BASE} + (n * 7919) % {PRICE_SPREAD}, 'KRW', 100, n % 20 <> 0, \
           now() - n * interval '1 second', now(), CASE WHEN n % 100 = 7 THEN now() END \
         FROM generate_series({first}::bigint, {last}::bigint) AS n",
        name_words = NAME_WORDS.len(),
        description_words = DESCRIPTION_WORDS.len(),
    )
}

/// `ARRAY['a','b']` of plain words.
fn sql_array(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    format!("ARRAY[{}]", quoted.join(","))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;

    fn summary(operation: &str, p99_ms: f64) -> Summary {
        Summary {
            operation: operation.to_owned(),
            count: 1,
            ok: 1,
            throughput: 1.0,
            p50_ms: p99_ms,
            p90_ms: p99_ms,
            p99_ms,
            max_ms: p99_ms,
            status: [("200".to_owned(), 1)].into(),
            cdf: Vec::new(),
        }
    }

    #[test]
    fn the_ratio_is_the_largest_sizes_p99_over_the_smallests() {
        let figures = ListingFigures::of(&[
            (
                1_000,
                940,
                vec![summary(PAGES, 4.0), summary(SEARCH, 5.0), summary(PRICE_BAND, 2.0)],
            ),
            (
                100_000,
                94_000,
                vec![summary(PAGES, 100.0), summary(SEARCH, 1.0), summary(PRICE_BAND, 2.0)],
            ),
            (1_000_000, 940_000, vec![summary(PAGES, 6.0), summary(SEARCH, 10.0)]),
        ]);
        assert_eq!(figures.sizes, [1_000, 100_000, 1_000_000]);
        assert_eq!(figures.listed, [940, 94_000, 940_000]);
        let pages = &figures.shapes[0];
        assert_eq!(pages.operation, PAGES);
        assert_eq!(pages.p99_ms, [4.0, 100.0, 6.0]);
        assert_eq!(pages.ratio, 1.5);
        assert_eq!(figures.shapes[1].ratio, 2.0);
        // A way not measured at the largest size has no ratio.
        assert_eq!(figures.shapes[2].ratio, 0.0);
        let table = figures.render();
        assert!(table.contains("1000000"), "{table}");
        assert!(table.contains("1.50"), "{table}");
    }

    #[test]
    fn the_seeding_statement_numbers_its_rows_and_shapes_them() {
        let sql = seed_statement(1_001, 2_000);
        assert!(sql.contains("generate_series(1001::bigint, 2000::bigint)"), "{sql}");
        assert!(sql.contains("ARRAY['amber','birch'"), "{sql}");
        assert!(sql.contains("n % 20 <> 0"), "{sql}");
    }
}
