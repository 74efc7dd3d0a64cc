//! The test harness itself: a service started through it reads the binary's configuration path
//! (overrides as variables), on a database, cache prefix and queue names of its own, behind
//! the mesh (a signed channel answers, an unsigned one does not); `stop` waits for `run` to
//! return, and dropping it stops it too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::{ConnectionTrait as _, DatabaseConnection};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use shop_platform::{
    config::{ConfigError, Env},
    grpc::{
        client::{Target, connect},
        server::{BoundGrpcServer, GrpcServerBuilder},
    },
    service::{Backends, MeshService, ServiceSettings, open_database},
    testing::{
        doubles::StockCatalog,
        service::{TestService, TestSetup},
    },
};
use shop_proto::pb::catalog::{self as catalog, catalog_service_client::CatalogServiceClient};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request};

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}

/// What the service read from its environment.
#[derive(Clone, Debug)]
struct StockConfig {
    /// `SHOP_TEST_STOCK` [7]: what GetStock answers.
    stock: i64,
    /// `SHOP_TEST_QUEUE` [stock]: a queue name.
    queue: String,
}

/// A service of the mesh, as small as one can be: a database and a gRPC server.
struct StockService {
    server: BoundGrpcServer,
    db: DatabaseConnection,
    /// Set once `run` returned.
    stopped: Arc<AtomicBool>,
}

impl StockService {
    fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl MeshService for StockService {
    const NAME: &'static str = "catalog";
    const DEFAULT_PORT: u16 = 50052;
    type Config = StockConfig;
    type Migrator = Migrator;

    fn config_from_env(env: &impl Env) -> Result<StockConfig, ConfigError> {
        Ok(StockConfig {
            stock: env.parse_or("SHOP_TEST_STOCK", 7)?,
            queue: env.var("SHOP_TEST_QUEUE").unwrap_or_else(|| "stock".to_owned()),
        })
    }

    async fn build(settings: ServiceSettings, config: StockConfig, _: Backends) -> anyhow::Result<Self> {
        let db = open_database::<Migrator>(&settings).await?;
        let server = GrpcServerBuilder::for_service(&settings)
            .add_service(StockCatalog::server(
                move |request: Request<catalog::GetStockRequest>| {
                    // A catalog that answers with its configured stock, and the queue name it read.
                    let config = config.clone();
                    async move {
                        Ok(catalog::GetStockResponse {
                            product_id: format!("{}/{}", request.into_inner().product_id, config.queue),
                            stock: config.stock,
                        })
                    }
                },
            ))
            .bind()
            .await?;
        Ok(Self {
            server,
            db,
            stopped: Arc::default(),
        })
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.server.serve(shutdown).await?;
        self.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn setup() -> TestSetup<StockService> {
    TestSetup::new(StockService::db)
}

/// GetStock through a channel signed as the gateway: (product id and queue, stock).
async fn stock(service: &TestService<StockService>) -> (String, i64) {
    let reply = CatalogServiceClient::new(service.channel().await)
        .get_stock(catalog::GetStockRequest { product_id: "p".into() })
        .await
        .unwrap()
        .into_inner();
    (reply.product_id, reply.stock)
}

async fn database_name(db: &DatabaseConnection) -> String {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT current_database() AS name",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "name").unwrap()
}

#[tokio::test]
async fn overrides_are_variables_read_through_the_services_own_configuration() {
    let service = setup()
        .env("SHOP_TEST_STOCK", "42")
        .unique_queues(&["SHOP_TEST_QUEUE"])
        .start()
        .await;
    let queue = service.var("SHOP_TEST_QUEUE").unwrap().to_owned();
    assert!(queue.starts_with("test_"), "{queue}");
    assert_eq!(stock(&service).await, (format!("p/{queue}"), 42));
    assert!(service.addr.ip().is_loopback());
    assert_ne!(service.addr.port(), StockService::DEFAULT_PORT);

    // Unsigned, the same call is refused: the service took its mesh keys from the environment.
    let target = Target::parse(&format!("http://{}", service.addr)).unwrap();
    let unsigned = connect(&target, &Default::default()).await.unwrap();
    let refused = CatalogServiceClient::new(unsigned)
        .get_stock(catalog::GetStockRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    service.stop().await;
}

#[tokio::test]
async fn each_service_has_its_own_database_cache_prefix_and_queues_unless_alongside_another() {
    let first = setup().unique_queues(&["SHOP_TEST_QUEUE"]).start().await;
    let second = setup().unique_queues(&["SHOP_TEST_QUEUE"]).start().await;
    let beside = setup().alongside(&first).start().await;

    let first_db = database_name(&first.db).await;
    assert!(first_db.starts_with("shop_test_"), "{first_db}");
    assert_ne!(first_db, database_name(&second.db).await);
    assert_eq!(first_db, database_name(&beside.db).await);
    for key in ["SHOP_CACHE_PREFIX", "SHOP_TEST_QUEUE"] {
        assert_ne!(first.var(key), second.var(key), "{key}");
        assert_eq!(first.var(key), beside.var(key), "{key}");
    }
    // The same mesh: the second service's channel is signed with keys the first trusts.
    assert_eq!(stock(&beside).await.1, 7);
}

/// The service built through a hook that hands it the flag its `run` sets on return.
async fn start_flagged() -> (TestService<StockService>, Arc<AtomicBool>) {
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped);
    let service = setup()
        .start_with(|settings, config, backends| async move {
            let mut service = StockService::build(settings, config, backends).await?;
            service.stopped = flag;
            Ok(service)
        })
        .await;
    (service, stopped)
}

#[tokio::test]
async fn stop_waits_for_run_and_dropping_stops_the_service() {
    let (service, stopped) = start_flagged().await;
    service.stop().await;
    assert!(stopped.load(Ordering::SeqCst), "run returned before stop did");

    let (service, stopped) = start_flagged().await;
    assert!(!stopped.load(Ordering::SeqCst));
    drop(service);
    tokio::time::timeout(Duration::from_secs(15), async {
        while !stopped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a dropped service stops");
}

#[tokio::test]
async fn an_embedded_service_runs_on_sqlite_in_a_data_directory_of_its_own() {
    let service = setup().embedded().start().await;
    let data_dir = service.var("SHOP_DATA_DIR").unwrap().to_owned();
    assert!(service.var("DATABASE_URL").is_none());
    assert_eq!(service.db.get_database_backend(), sea_orm::DatabaseBackend::Sqlite);
    assert!(std::path::Path::new(&data_dir).join("shop-catalog.db").exists());
    assert_eq!(stock(&service).await.1, 7);
    service.stop().await;
}
