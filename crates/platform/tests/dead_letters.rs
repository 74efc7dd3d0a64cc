//! Bounded dead-letter queues and their depth gauge, on the real RabbitMQ: a dead-letter queue
//! beyond its bound drops its oldest messages; one that exists without the bound (declared by
//! an earlier version) is kept as it is and still takes dead letters; the gauge
//! `messaging.queue.dead_letters` reports the depth, read back through an in-memory exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use lapin::{
    Connection, ConnectionProperties,
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable, LongString},
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
    data::{AggregatedMetrics, MetricData},
};
use shop_platform::{
    queue::{AmqpQueue, DeadLetterGauge, DeadLetters, Message, QueueSpec, WorkQueue, dead_letter_queue_name},
    testing,
};

const PATIENCE: Duration = Duration::from_secs(20);

async fn broker() -> Arc<dyn WorkQueue> {
    testing::init_test_logging();
    Arc::new(AmqpQueue::connect(&testing::amqp_url()).await.unwrap())
}

fn message(id: &str) -> Message {
    Message {
        id: id.to_owned(),
        kind: "test.Event".into(),
        payload: id.as_bytes().to_vec(),
        headers: Default::default(),
    }
}

/// Publishes `ids` to `spec`'s queue and dead-letters each in turn.
async fn dead_letter_all(queue: &Arc<dyn WorkQueue>, spec: &QueueSpec, ids: &[String]) {
    queue
        .publish(&spec.name, ids.iter().map(|id| message(id)).collect())
        .await
        .unwrap();
    let mut consumer = queue.consume(&spec.name, 50).await.unwrap();
    for id in ids {
        let delivery = tokio::time::timeout(PATIENCE, consumer.next()).await.unwrap().unwrap();
        assert_eq!(&delivery.message.id, id);
        delivery.dead_letter().await.unwrap();
    }
}

/// The ids in `queue`'s dead-letter queue, once they are `expected` (fails after a while).
async fn wait_for_dead_letters(queue: &str, expected: &BTreeSet<String>) {
    let letters = DeadLetters::connect(&testing::amqp_url()).await.unwrap();
    let mut seen = BTreeSet::new();
    let arrived = tokio::time::timeout(PATIENCE, async {
        loop {
            seen = letters
                .peek(queue, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|letter| letter.message.id)
                .collect();
            if &seen == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        arrived.is_ok(),
        "dead letters of {queue}: {seen:?}, expected {expected:?}"
    );
}

/// The last value of the gauge for `dead_letter_queue`.
fn gauge_value(exporter: &InMemoryMetricExporter, dead_letter_queue: &str) -> Option<u64> {
    let mut value = None;
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == "messaging.queue.dead_letters") {
                if let AggregatedMetrics::U64(MetricData::Gauge(gauge)) = metric.data() {
                    for point in gauge.data_points() {
                        let ours = point.attributes().any(|attribute| {
                            attribute.key.as_str() == "messaging.destination.name"
                                && attribute.value.as_str() == dead_letter_queue
                        });
                        if ours {
                            value = Some(point.value());
                        }
                    }
                }
            }
        }
    }
    value
}

#[tokio::test]
async fn a_full_dead_letter_queue_drops_its_oldest_and_the_gauge_reports_its_depth() {
    let queue = broker().await;
    let spec = QueueSpec::new(testing::unique_name("dlbound"))
        .with_max_deliveries(1)
        .with_dead_letter_max_length(3);
    queue.declare(&spec).await.unwrap();

    let ids: Vec<String> = (0..5).map(|n| format!("m{n}")).collect();
    dead_letter_all(&queue, &spec, &ids).await;
    // Five went in; the bound keeps the three most recent.
    wait_for_dead_letters(&spec.name, &ids[2..].iter().cloned().collect()).await;

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let gauge = DeadLetterGauge::with_meter(&provider.meter("test"), Arc::clone(&queue), [spec.name.clone()]);
    let dead = dead_letter_queue_name(&spec.name);
    // Peeking returns the letters it looked at to the queue, and a quorum queue counts them
    // as ready again a moment later: poll until the depth shows them (or give up).
    let mut depth = None;
    let _ = tokio::time::timeout(PATIENCE, async {
        loop {
            exporter.reset();
            gauge.poll().await.unwrap();
            provider.force_flush().unwrap();
            depth = gauge_value(&exporter, &dead);
            if depth == Some(3) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(depth, Some(3));

    // A queue that is gone leaves the gauge rather than report a stale depth.
    testing::delete_queues(std::slice::from_ref(&spec.name)).await;
    exporter.reset();
    assert!(gauge.poll().await.is_ok());
    provider.force_flush().unwrap();
    assert_eq!(gauge_value(&exporter, &dead), None);
}

#[tokio::test]
async fn an_existing_unbounded_dead_letter_queue_is_kept_as_it_is() {
    let queue = broker().await;
    let spec = QueueSpec::new(testing::unique_name("dlold"))
        .with_max_deliveries(1)
        .with_dead_letter_max_length(2);
    let dead = dead_letter_queue_name(&spec.name);

    // The dead-letter queue as earlier versions declared it: no length bound.
    let connection = Connection::connect(&testing::amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(dead.as_str().into(), durable, arguments)
        .await
        .unwrap();

    // RabbitMQ refuses the bounded declaration; the adapter carries on with the queue there.
    queue.declare(&spec).await.unwrap();
    // Declared again (another replica, or the broker forgot the work queue): still fine.
    queue
        .declare(&spec.clone().with_dead_letter_max_length(7))
        .await
        .unwrap();

    // The topology works: dead letters arrive, unbounded as the queue always was.
    let ids: Vec<String> = (0..3).map(|n| format!("old{n}")).collect();
    dead_letter_all(&queue, &spec, &ids).await;
    wait_for_dead_letters(&spec.name, &ids.iter().cloned().collect()).await;
    // Counted by the adapter too (once the peek's returns are back in the queue).
    let counted = tokio::time::timeout(PATIENCE, async {
        while queue.message_count(&dead).await.unwrap() != Some(3) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "the adapter counts the three dead letters");

    connection.close(200, "done".into()).await.ok();
    testing::delete_queues(std::slice::from_ref(&spec.name)).await;
}

/// A dead-letter queue the adapter created with one bound and is later declared with another
/// (the setting changed) is also kept as it is.
#[tokio::test]
async fn a_changed_bound_keeps_the_existing_dead_letter_queue() {
    let queue = broker().await;
    let spec = QueueSpec::new(testing::unique_name("dlchanged"))
        .with_max_deliveries(1)
        .with_dead_letter_max_length(2);
    queue.declare(&spec).await.unwrap();
    queue
        .declare(&spec.clone().with_dead_letter_max_length(10))
        .await
        .unwrap();

    let ids: Vec<String> = (0..4).map(|n| format!("c{n}")).collect();
    dead_letter_all(&queue, &spec, &ids).await;
    // The first bound (2) still holds.
    wait_for_dead_letters(&spec.name, &ids[2..].iter().cloned().collect()).await;
    testing::delete_queues(std::slice::from_ref(&spec.name)).await;
}
