//! The `shop-catalog` binary as Kubernetes runs it with the chart's migration hook: a Job runs
//! it with `SHOP_MIGRATE=only` under a DDL-capable role, granting the runtime role
//! (`SHOP_MIGRATE_GRANT_TO`); the serving pods run it with `SHOP_MIGRATE=skip` under that role,
//! which may read and write rows but not change the schema. `shop-catalog probe grpc` is the
//! chart's `helm test` check. (The mechanism is the platform's, shared by every service.)

use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait as _, Database};
use shop_platform::testing;

const BINARY: &str = env!("CARGO_BIN_EXE_shop-catalog");

/// Runs the binary to completion with exactly `env` (plus PATH-free basics), at most 60 s.
fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .env_clear()
        .env("SHOP_METRICS_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            panic!("{BINARY} {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A login role with no right but connecting (PUBLIC's default), dropped by nobody: role names
/// are unique per test.
async fn create_runtime_role(admin_url: &str) -> (String, String) {
    let admin = Database::connect(admin_url).await.unwrap();
    let role = testing::unique_name("shop_app");
    admin
        .execute_unprepared(&format!("CREATE ROLE {role} LOGIN PASSWORD 'runtime-pw'"))
        .await
        .unwrap();
    admin.close().await.ok();
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("runtime-pw")).unwrap();
    (role, url.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_job_then_least_privilege_replicas() {
    testing::init_test_logging();
    let admin_url = testing::create_postgres_database().await;
    let (role, runtime_url) = create_runtime_role(&admin_url).await;

    // 1. A replica that skips migrations refuses a schema that is behind, and creates nothing.
    let refused = run(&[("DATABASE_URL", runtime_url.as_str()), ("SHOP_MIGRATE", "skip")], &[]);
    assert!(!refused.status.success(), "started on an empty database");
    assert!(
        stderr(&refused).contains("SHOP_MIGRATE=only"),
        "the error says what to do: {}",
        stderr(&refused)
    );

    // 2. The job: migrates with the admin role, grants the runtime role, exits 0 without serving
    //    (no broker or cache configured: it touches none).
    let job = run(
        &[
            ("DATABASE_URL", admin_url.as_str()),
            ("SHOP_MIGRATE", "only"),
            ("SHOP_MIGRATE_GRANT_TO", role.as_str()),
            ("AMQP_URL", "amqp://nobody:nothing@127.0.0.1:1/%2f"),
        ],
        &[],
    );
    assert!(job.status.success(), "migration job failed: {}", stderr(&job));

    // 3. The runtime role reads and writes rows, and cannot change the schema.
    let mut catalog_url = url::Url::parse(&runtime_url).unwrap();
    catalog_url
        .query_pairs_mut()
        .append_pair("options", "-c search_path=catalog");
    let runtime = Database::connect(catalog_url.as_str()).await.unwrap();
    runtime
        .execute_unprepared("SELECT count(*) FROM seaql_migrations")
        .await
        .unwrap();
    let ddl = runtime
        .execute_unprepared("CREATE TABLE catalog.sneaky (id int)")
        .await
        .expect_err("the runtime role must not create tables");
    assert!(ddl.to_string().contains("permission denied"), "{ddl}");
    runtime.close().await.ok();

    // 4. A replica under the runtime role with SHOP_MIGRATE=skip serves; the binary's own probe
    //    (what `helm test` runs) says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut replica = Command::new(BINARY)
        .env_clear()
        .envs([
            ("DATABASE_URL", runtime_url.as_str()),
            ("SHOP_MIGRATE", "skip"),
            ("SHOP_GRPC_ADDR", addr.as_str()),
            ("SHOP_METRICS_ADDR", "127.0.0.1:0"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let probe = run(&[], &["probe", "grpc", addr.as_str()]);
        if probe.status.success() {
            break;
        }
        if let Some(status) = replica.try_wait().unwrap() {
            let output = replica.wait_with_output().unwrap();
            panic!("the replica exited ({status}): {}", stderr(&output));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not SERVING within 30 s: {}",
            stderr(&probe)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    replica.kill().ok();
    replica.wait().ok();

    // 5. A probe of nothing fails, naming where it looked.
    let nothing = run(&[], &["probe", "grpc", addr.as_str()]);
    assert_eq!(nothing.status.code(), Some(1), "{}", stderr(&nothing));
    assert!(stderr(&nothing).contains(&addr), "{}", stderr(&nothing));
}

#[test]
fn a_bad_mode_or_command_line_is_refused_with_exit_64() {
    let bad_mode = run(&[("SHOP_MIGRATE", "later")], &[]);
    assert_eq!(bad_mode.status.code(), Some(64));
    assert!(stderr(&bad_mode).contains("SHOP_MIGRATE"), "{}", stderr(&bad_mode));
    let bad_args = run(&[], &["serve"]);
    assert_eq!(bad_args.status.code(), Some(64));
    assert!(stderr(&bad_args).contains("usage:"), "{}", stderr(&bad_args));
}
