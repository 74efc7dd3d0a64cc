//! `read`: one GET again and again, by every connection: one product
//! (`GET /api/v1/products/{id}`), or the first page of the list (`--list`,
//! `GET /api/v1/products?limit=20`). Its ceiling: nginx serving the very same body.

use std::sync::Arc;

use anyhow::Context as _;
use reqwest::Method;
use tokio::time::Instant;

use crate::{
    ceiling::{self, Ceiling},
    driver::{Limit, Workload},
    http::{self, Endpoint},
    options::Options,
    people,
    report::Report,
    stats::Recorder,
    target::Shop,
};

/// One product's operation.
const ONE: &str = "GET /products/{id}";
/// The list's operation.
const LIST: &str = "GET /products?limit=20";

/// The same GET each step.
#[derive(Debug)]
pub struct Read {
    endpoint: Endpoint,
    path: String,
    operation: &'static str,
    recorder: Arc<Recorder>,
}

impl Workload for Read {
    type User = ();

    async fn step(&self, _user: &mut (), _seq: u64, intended: Instant) {
        let request = self.endpoint.request(Method::GET, &self.path, None);
        http::measure(&self.recorder, self.operation, request, intended).await;
    }
}

/// Runs the scenario on `shop`.
pub async fn run(shop: &Shop, http: &reqwest::Client, options: &Options) -> anyhow::Result<Report> {
    let admin = people::admin(shop).await?;
    let (path, operation) = if options.list {
        people::products(shop, &admin, "Read item", 20, 1_000).await?;
        ("/api/v1/products?limit=20".to_owned(), LIST)
    } else {
        let product = people::products(shop, &admin, "Read item", 1, 1_000).await?;
        let id = &product.first().context("the product just made")?.id;
        (format!("/api/v1/products/{id}"), ONE)
    };
    let limit = Limit {
        duration: Some(options.duration),
        steps: None,
    };
    let users = vec![(); options.connections];
    let load = async |origin: &str, label: &str| {
        let recorder = Arc::new(Recorder::default());
        let read = Arc::new(Read {
            endpoint: Endpoint::new(http.clone(), origin),
            path: path.clone(),
            operation,
            recorder: Arc::clone(&recorder),
        });
        let elapsed = super::timed(label, read, users.clone(), &recorder, options, limit).await;
        recorder.summarize(elapsed)
    };
    let operations = load(&shop.origin, "read").await;
    let mut report = Report::new(options, operations);
    if options.ceilings {
        // The very bytes the shop answers.
        let body = Endpoint::new(http.clone(), &shop.origin)
            .request(Method::GET, &path, None)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        report.ceiling = Some(match ceiling::Nginx::start(&path, &body).await {
            Ok(nginx) => {
                let operations = load(&nginx.origin(), "read (nginx)").await;
                Ceiling::of_nginx(&report.operations, &operations, operation)
            }
            Err(error) => Ceiling::skipped("nginx", &error),
        });
    }
    Ok(report)
}
