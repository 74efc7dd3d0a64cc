//! The order service as its own process (one Kubernetes Deployment), configured by the
//! environment: `SHOP_GRPC_ADDR` [0.0.0.0:50053], `DATABASE_URL`, `REDIS_URL`, `AMQP_URL`, and the
//! order settings of `OrderConfig`: `SHOP_CATALOG_TARGET`, `SHOP_USER_TARGET`, `SHOP_SHIP_AFTER`,
//! `SHOP_DELIVER_AFTER`, `SHOP_CANCEL_WINDOW`, `SHOP_RETURN_WINDOW`, the stock queues
//! (`SHOP_CATALOG_RESERVE_QUEUE`, `SHOP_CATALOG_RELEASE_QUEUE`, `SHOP_CATALOG_RESULTS_QUEUE`),
//! `SHOP_ORDER_RESULT_CONSUMERS`, `SHOP_ORDER_SHIPMENT_INTERVAL` and
//! `SHOP_PAYMENT_DECLINE_AMOUNT`.

fn main() -> std::process::ExitCode {
    shop_platform::service::main::<shop_order::OrderService>()
}
