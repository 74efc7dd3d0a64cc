//! The catalog service as its own process (one Kubernetes Deployment), configured by the
//! environment: `SHOP_GRPC_ADDR` [0.0.0.0:50052], `DATABASE_URL`, `REDIS_URL`, `AMQP_URL`.

fn main() -> std::process::ExitCode {
    shop_platform::service::main::<shop_catalog::CatalogService>()
}
