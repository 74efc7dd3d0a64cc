//! Cluster in a box: the chart's rendered release, executed. There is no Kubernetes here, so the
//! test plays its parts on loopback and runs exactly what Helm renders
//! (helm/shop/ci/cluster-in-a-box-values.yaml):
//!
//! - Helm: tools/chart/render.py renders the chart with Helm's engine; the pre-install hooks
//!   (the migration Jobs) run to completion first, then every Deployment's replicas start, and
//!   `helm test`'s pods run last;
//! - the kubelet, the Endpoints controller and the cluster DNS ([`node`]): each replica its
//!   binary (named by its image) with exactly the rendered environment, the Secrets' data from
//!   this test (the servers on loopback, isolated per run), on its own 127.a.b.x address; the
//!   rendered probes decide readiness, and each headless Service is a name dnsmasq answers with
//!   every ready replica's address; the binaries resolve through it (a resolv.conf per pod);
//! - ingress-nginx ([`ingress`]): the rendered Ingresses as an nginx configuration.
//!
//! Then the REST journey runs through nginx with the Ingress's Host, a gRPC read goes through
//! the gRPC Ingress over TLS, and a flash sale runs while a catalog replica is killed and a new
//! one joins: every order is admitted and ends paid or rejected for stock, the stock is sold
//! exactly, and the catalog's calls spread over every live replica. A value, a Secret key, a
//! port or a name renamed in the chart fails a step of this test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ingress;
mod node;
mod release;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::{Value, json};
use shop_platform::grpc::mesh::{self, Grants, MeshIdentity, MeshSecret, TrustSet};
use shop_platform::testing::{
    amqp_url, create_postgres_database, database_name, delete_queues_blocking, postgres_url, redis_url, run_queues,
    unique_name,
};
use shop_proto::shop::catalog::v1::{GetProductRequest, catalog_service_client::CatalogServiceClient};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use self::{
    ingress::{IngressController, grpc_channel, self_signed},
    node::{Node, Pod},
    release::{Release, Secrets, name},
};
use crate::{
    api::Api,
    journey::{Session, create_product, log_in, place_order, sign_up},
    mail::{Mailbox, SmtpSink},
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD, SigningKey},
};

/// The value file of the release under test.
const VALUES: &str = "helm/shop/ci/cluster-in-a-box-values.yaml";
/// The public Ingress's host, and the gRPC Ingress's.
const PUBLIC_HOST: &str = "shop.example.com";
const GRPC_HOST: &str = "grpc.shop.example.com";
/// The Secrets the release reads (values.yaml: secretName, grpcIngress.tlsSecretName).
const BACKENDS_SECRET: &str = "shop-backends";
const GRPC_TLS_SECRET: &str = "shop-grpc-tls";
const MESH_SECRET: &str = "shop-mesh";
/// An internal team calling through the gRPC Ingress, and what its mesh grant lets it call.
const TEAM: &str = "reports";
const TEAM_METHOD: &str = "shop.catalog.v1.CatalogService/GetProduct";
/// How long every replica may take to pass its probes.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The flash sale: units in stock, buyers ordering one unit at a time, all at once.
const FLASH_STOCK: i64 = 40;
const FLASH_BUYERS: usize = 8;
/// The longest each phase of the sale may take.
const SALE_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rendered_chart_runs_as_a_cluster_in_a_box() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let run = unique_name("box");
    let runtime_role = format!("{run}_app");
    let queue_env = run_queues(&run);
    let queues: Vec<String> = queue_env.iter().map(|(_, queue)| queue.clone()).collect();
    let _cleanup = Cleanup { queues: queues.clone() };

    // What an operator sets per installation, here what isolates this run from others on the
    // same servers: given through the chart's own values.
    let overlay = dir.path().join("run-values.json");
    std::fs::write(
        &overlay,
        json!({
            "global": {"extraEnv": std::iter::once(json!({"name": "SHOP_CACHE_PREFIX", "value": format!("{run}:")}))
                .chain(queue_env.iter().map(|(name, value)| json!({"name": name, "value": value})))
                .collect::<Vec<_>>()},
            "migrations": {"grantTo": runtime_role},
            "mesh": {"grants": format!("{TEAM}={TEAM_METHOD}")},
        })
        .to_string(),
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = Release::render(&[&root.join(VALUES), &overlay]);

    // The Secrets the operator creates before `helm install`.
    let sink = SmtpSink::start().await;
    let migration_url = create_postgres_database().await;
    let database = database_name(&migration_url).unwrap();
    psql(&format!("CREATE ROLE {runtime_role} LOGIN PASSWORD 'box-runtime'"));
    let mut runtime_url = url::Url::parse(&migration_url).unwrap();
    runtime_url.set_username(&runtime_role).unwrap();
    runtime_url.set_password(Some("box-runtime")).unwrap();
    let (grpc_cert, grpc_key) = self_signed(GRPC_HOST);
    let mesh_keys = mesh_keys();
    let mesh_data = mesh_secret(&mesh_keys);
    let secrets: Secrets = [
        (
            BACKENDS_SECRET,
            vec![
                ("DATABASE_URL", runtime_url.to_string()),
                ("DATABASE_MIGRATION_URL", migration_url.clone()),
                ("REDIS_URL", redis_url()),
                ("AMQP_URL", amqp_url()),
                ("SMTP_URL", format!("smtp://127.0.0.1:{}", sink.port)),
                ("SHOP_JWT_SIGNING_KEYS", SigningKey::random("box").setting()),
                ("SHOP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
                ("SHOP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ],
        ),
        (
            GRPC_TLS_SECRET,
            vec![("tls.crt", grpc_cert.clone()), ("tls.key", grpc_key)],
        ),
        (
            MESH_SECRET,
            mesh_data.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
        ),
    ]
    .into_iter()
    .map(|(secret, data)| {
        let data = data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        (secret.to_owned(), data)
    })
    .collect();
    let mail = Mailbox::Smtp(sink);

    // `helm install`: the hooks, then the release; the kubelet's probes decide readiness.
    let mut node = Node::start(&release, secrets.clone(), dir.path()).await;
    let jobs = release.hooks("Job", "pre-install");
    assert_eq!(jobs.len(), 3, "one migration Job per service");
    for job in &jobs {
        node.run_to_completion(job).await;
    }
    let deployments = release.installed("Deployment");
    for deployment in &deployments {
        node.start_deployment(deployment);
    }
    node.wait_ready(READY_TIMEOUT).await;
    let replicas: BTreeMap<&str, usize> = deployments
        .iter()
        .map(|deployment| {
            (
                name(deployment),
                node.pods().iter().filter(|pod| pod.owner == name(deployment)).count(),
            )
        })
        .collect();
    eprintln!("ready after {:?}: {replicas:?}", started.elapsed());
    assert_eq!(
        replicas,
        BTreeMap::from([
            ("shop-catalog", 3),
            ("shop-gateway", 2),
            ("shop-order", 3),
            ("shop-user", 2)
        ])
    );
    assert_exact_environments(&node);
    let mut ingress = IngressController::start(&release, &mut node, &secrets, dir.path()).await;
    // `helm test`: the rendered test pods, through the Services' DNS names.
    for test in release.hooks("Pod", "test") {
        node.run_to_completion(test).await;
    }

    // --- The REST journey through the public Ingress. ---------------------------------------
    let origin = format!("http://{}", ingress.ip);
    let api = Api::behind_ingress(origin.clone(), PUBLIC_HOST);
    assert_eq!(
        api.get("/products").send().await.expect(200),
        json!({"items": [], "next_cursor": null})
    );
    api.at(Method::GET, "/openapi.json").send().await.expect(200);
    // Only the public API leaves the cluster; other hosts meet the default server.
    assert_eq!(api.at(Method::GET, "/readyz").send().await.status, 404);
    let stranger = Api::behind_ingress(origin.clone(), "other.example.com");
    assert_eq!(stranger.get("/products").send().await.status, 404);

    let buyer = sign_up(&api, &mail, "buyer").await;
    let seller = sign_up(&api, &mail, "seller").await;
    let admin = log_in(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    api.put(&format!("/users/{}/role", seller.user_id), &json!({"role": "seller"}))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    let seller = log_in(&api, &seller.email, &seller.password).await;
    let lamp = create_product(&api, &seller, "Walnut desk lamp", "Warm light", 45_000, 5).await;
    let order = place_order(
        &api,
        &buyer,
        "lamp-1",
        &json!({"items": [{"product_id": lamp, "quantity": 2}]}),
    )
    .await;
    let paid = api
        .wait_for_order(
            &buyer.access,
            order["id"].as_str().unwrap(),
            "paid",
            Duration::from_secs(30),
            |o| o["status"] != "pending",
        )
        .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["payment"]["amount"], 90_000);
    assert_eq!(api.stock(&lamp).await, 3);

    // --- An internal team's gRPC call through the gRPC Ingress (TLS, HTTP/2). ---------------
    let channel = grpc_channel(ingress.ip, GRPC_HOST, &grpc_cert).await;
    let unsigned = CatalogServiceClient::new(channel.clone())
        .get_product(GetProductRequest { id: lamp.clone() })
        .await
        .expect_err("a call without a mesh token is refused");
    assert_eq!(unsigned.code(), tonic::Code::Unauthenticated, "{unsigned:?}");
    let team = MeshIdentity::new(
        TEAM,
        mesh_keys.key(TEAM).unwrap().clone(),
        TrustSet::default(),
        &Grants::default(),
    )
    .unwrap();
    let mut signed = tonic::Request::new(GetProductRequest { id: lamp.clone() });
    let token = team.mint(mesh::CATALOG, TEAM_METHOD, None).unwrap();
    signed
        .metadata_mut()
        .insert(mesh::TOKEN_METADATA, token.parse().unwrap());
    let product = CatalogServiceClient::new(channel.clone())
        .get_product(signed)
        .await
        .expect("CatalogService/GetProduct through the gRPC Ingress, signed by the team's key")
        .into_inner()
        .product
        .unwrap();
    assert_eq!((product.name.as_str(), product.stock), ("Walnut desk lamp", 3));
    // Health is not routed (each service has its own): nginx answers 404.
    let health = HealthClient::new(channel).check(HealthCheckRequest::default()).await;
    let refused = health.expect_err("grpc.health.v1.Health is not routed");
    assert!(refused.message().contains("404"), "{refused:?}");
    // Plain HTTP to the TLS host is redirected (ssl-redirect).
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{origin}/shop.catalog.v1.CatalogService/GetProduct"))
        .header("host", GRPC_HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 308);

    // --- A flash sale while a catalog replica dies and a new one joins. ---------------------
    flash_sale(&api, &mail, &seller, &mut node, &deployments).await;
    // The ingress balanced over both gateway replicas.
    let by_gateway: BTreeMap<String, usize> = ingress
        .upstream_counts(PUBLIC_HOST)
        .into_iter()
        .map(|(upstream, count)| {
            let pod = node
                .pods()
                .iter()
                .find(|pod| upstream.starts_with(&format!("{}:", pod.ip)));
            (pod.map_or(upstream, |pod| pod.name.clone()), count)
        })
        .collect();
    eprintln!("requests per gateway replica through the ingress: {by_gateway:?}");
    assert_eq!(by_gateway.len(), 2, "{by_gateway:?}");
    assert!(
        by_gateway.keys().all(|name| name.starts_with("shop-gateway-")),
        "{by_gateway:?}"
    );

    // The binaries found each other through the Services' fully qualified names, final dot
    // included: no lookup walked the resolv.conf search list.
    let queries = node.dns_queries();
    let services: Vec<String> = release
        .installed("Service")
        .iter()
        .map(|svc| node.service_host(name(svc)))
        .collect();
    assert!(!queries.is_empty(), "nobody asked the cluster DNS");
    let strays: Vec<&String> = queries.iter().filter(|query| !services.contains(query)).collect();
    assert!(strays.is_empty(), "lookups outside the Services' names: {strays:?}");
    eprintln!("{} DNS queries, all for {services:?}", queries.len());

    node.assert_healthy();
    ingress.assert_running();
    drop(ingress);
    drop(node);
    // Passed: the run's database and role go (a failed run keeps them for a post-mortem).
    psql(&format!("DROP DATABASE {database} WITH (FORCE)"));
    psql(&format!("DROP ROLE {runtime_role}"));
    eprintln!("cluster in a box: passed in {:?}", started.elapsed());
}

/// Every replica's process runs with exactly the environment the chart rendered (the kubelet
/// adds nothing the binaries read), read back from /proc.
fn assert_exact_environments(node: &Node) {
    for pod in node.pods() {
        let raw = std::fs::read(format!("/proc/{}/environ", pod.pid())).unwrap();
        let mut actual: Vec<String> = raw
            .split(|byte| *byte == 0)
            .filter(|entry| !entry.is_empty())
            .map(|entry| String::from_utf8_lossy(entry).into_owned())
            .collect();
        let mut expected: Vec<String> = pod.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        actual.sort();
        expected.sort();
        assert_eq!(
            actual, expected,
            "{}: the environment is not the rendered one",
            pod.name
        );
    }
}

/// The flash sale: buyers order one unit each of a product with [`FLASH_STOCK`] units through
/// the ingress, [`FLASH_BUYERS`] of them at once, each placing orders one after the other.
/// Once [`FLASH_STOCK`] orders are in, a catalog replica is killed and a new one added; the sale
/// goes on until the newcomer has been in DNS for longer than the clients' re-resolution period
/// and twice the stock was ordered. Every order must be admitted (a 502/503/504 while the
/// replica dies, or a 409 while the first attempt is still placed, is sent again with the same
/// Idempotency-Key, as the API asks of clients) and end `paid` or `rejected` for stock; the
/// stock is sold exactly; the catalog's calls spread over the live replicas, the new one
/// included.
async fn flash_sale(api: &Api, mail: &Mailbox, seller: &Session, node: &mut Node, deployments: &[&Value]) {
    let kettle = create_product(api, seller, "Flash sale kettle", "Limited stock", 30_000, FLASH_STOCK).await;
    let mut buyers = Vec::new();
    for n in 0..FLASH_BUYERS {
        buyers.push(sign_up(api, mail, &format!("flash{n}")).await);
    }
    let catalog = *deployments.iter().find(|d| name(d) == "shop-catalog").unwrap();
    let retried = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let placed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sale_started = Instant::now();
    let mut workers = Vec::new();
    for (worker, buyer) in buyers.into_iter().enumerate() {
        let (api, kettle) = (api.clone(), kettle.clone());
        let (retried, placed, stop) = (Arc::clone(&retried), Arc::clone(&placed), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut orders = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let key = format!("flash-{worker}-{}", orders.len());
                let body = json!({"items": [{"product_id": kettle, "quantity": 1}]});
                let mut attempts = 0;
                let id = loop {
                    let reply = api
                        .post("/orders", &body)
                        .token(&buyer.access)
                        .header("idempotency-key", &key)
                        .send()
                        .await;
                    match reply.status.as_u16() {
                        200 | 202 => break reply.body["id"].as_str().unwrap().to_owned(),
                        status @ (409 | 502 | 503 | 504) if attempts < 20 => {
                            attempts += 1;
                            *retried.lock().unwrap().entry(status).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        _ => panic!("order {key} not admitted: {reply:?}"),
                    }
                };
                placed.fetch_add(1, Ordering::SeqCst);
                orders.push((buyer.access.clone(), id));
            }
            orders
        }));
    }
    let wait_for = async |count: usize| {
        let waiting = async {
            while placed.load(Ordering::SeqCst) < count {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(SALE_TIMEOUT, waiting)
            .await
            .unwrap_or_else(|_| panic!("fewer than {count} orders admitted within {SALE_TIMEOUT:?}"));
    };

    let stock = usize::try_from(FLASH_STOCK).unwrap();
    wait_for(stock).await;
    let victim_name = node
        .pods()
        .iter()
        .find(|pod| pod.owner == "shop-catalog")
        .unwrap()
        .name
        .clone();
    let victim: Pod = node.kill(&victim_name);
    let killed_at = sale_started.elapsed();
    let newcomer = node.add_replica(catalog);
    node.wait_ready(READY_TIMEOUT).await;
    let joined_at = sale_started.elapsed();
    // The clients re-resolve every 5 s: the sale goes on past that, and to twice the stock.
    tokio::time::sleep(Duration::from_secs(7)).await;
    wait_for(2 * stock).await;
    stop.store(true, Ordering::SeqCst);
    let mut orders = Vec::new();
    for worker in workers {
        orders.extend(worker.await.expect("a buyer's orders"));
    }
    let sale_took = sale_started.elapsed();
    // Reads of the product after the sale: the gateways' calls go to every live replica.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for _ in 0..30 {
        api.get(&format!("/products/{kettle}")).send().await.expect(200);
    }

    // Every admitted order ends paid or rejected for stock; the stock is sold exactly.
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (token, id) in &orders {
        let order = api
            .wait_for_order(token, id, "settled", Duration::from_secs(60), |o| {
                o["status"] != "pending"
            })
            .await;
        let outcome = match order["status"].as_str().unwrap() {
            "rejected" => {
                let reason = order["status_reason"].as_str().unwrap_or_default();
                assert!(
                    reason.starts_with("out_of_stock"),
                    "order {id} rejected for {reason}: {order}"
                );
                "rejected (out of stock)"
            }
            "paid" => "paid",
            other => panic!("order {id} ended {other}: {order}"),
        };
        *outcomes.entry(outcome.to_owned()).or_default() += 1;
    }
    let paid = outcomes.get("paid").copied().unwrap_or_default();
    eprintln!(
        "flash sale: {} orders in {sale_took:?} (attempts sent again, by status: {:?}), replica \
         {victim_name} killed at {killed_at:?}, {newcomer} ready at {joined_at:?}: {outcomes:?}",
        orders.len(),
        retried.lock().unwrap()
    );
    assert_eq!(
        i64::try_from(paid).unwrap(),
        FLASH_STOCK,
        "exactly the stock is sold: {outcomes:?}"
    );
    assert_eq!(api.stock(&kettle).await, 0, "nothing oversold, nothing left");

    // The calls each catalog replica served (its log has one line per gRPC call).
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    served.insert(format!("{victim_name} (killed)"), catalog_calls(&victim.lines()));
    for pod in node.pods().iter().filter(|pod| pod.owner == "shop-catalog") {
        served.insert(pod.name.clone(), catalog_calls(&pod.lines()));
    }
    eprintln!("CatalogService calls per catalog replica: {served:?}");
    for (replica, calls) in &served {
        assert!(*calls > 0, "catalog replica {replica} served no call: {served:?}");
    }
}

/// The CatalogService calls in a replica's log (health checks are not counted).
fn catalog_calls(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|line| {
            line.contains("started processing request")
                && line.contains(r#""rpc.service":"shop.catalog.v1.CatalogService""#)
        })
        .count()
}

/// Runs one SQL statement as the test's PostgreSQL admin.
fn psql(sql: &str) {
    let output = std::process::Command::new("psql")
        .arg(postgres_url())
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg("-qc")
        .arg(sql)
        .output()
        .expect("psql (postgresql-client) runs");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes the run's queues however the test ends.
struct Cleanup {
    queues: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_queues_blocking(std::mem::take(&mut self.queues));
    }
}

/// A mesh key for each member, as `shop-admin mesh secret` makes them.
/// The internal team's key is in the trust set like theirs, but no component holds it.
fn mesh_keys() -> MeshSecret {
    MeshSecret::generate(&[mesh::GATEWAY, mesh::USER, mesh::CATALOG, mesh::ORDER, TEAM])
}

/// The mesh Secret's data: `<member>.key` each, and the `trust` set naming them all.
fn mesh_secret(keys: &MeshSecret) -> Vec<(String, String)> {
    let mut data = keys.key_entries(&mesh::MEMBERS);
    data.push(("trust".to_owned(), keys.trust()));
    data
}
