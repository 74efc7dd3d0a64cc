//! The consumer runner, on both queue adapters: outages are waited out without burning
//! deliveries, poison is dead-lettered at once, other failures use the delivery limit, a failed
//! batch is split, and shutdown returns a held batch to the queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use shop_platform::{
    fault::Unavailable,
    queue::{
        Message, QueueSpec, WorkQueue, bundle,
        runner::{ConsumerRunner, Handler, Poison, Received, RunnerOptions},
    },
    testing::queues::{self, ARRIVES},
};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const TEST_LIMIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(400);

macro_rules! runner_tests {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    shop_platform::testing::queues::run_on_memory(super::TEST_LIMIT, super::$test).await;
                }
            )*
        }

        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    shop_platform::testing::queues::run_on_rabbitmq(super::TEST_LIMIT, super::$test).await;
                }
            )*
        }
    };
}

runner_tests!(
    an_outage_longer_than_the_delivery_limit_dead_letters_nothing,
    poison_is_dead_lettered_at_once_and_the_rest_applies,
    failures_that_are_not_outages_use_the_delivery_limit,
    a_failed_batch_is_split_so_its_good_messages_apply,
    shutdown_returns_a_held_batch_to_the_queue,
    a_bundle_is_applied_as_its_messages_in_batches_of_the_batch_size,
    a_bundled_poison_message_is_dead_lettered_alone,
    a_bundled_message_that_fails_goes_back_alone_and_its_bundle_is_acknowledged,
    a_bundle_that_cannot_be_read_is_dead_lettered,
);

// ---- The tests. ----

async fn an_outage_longer_than_the_delivery_limit_dead_letters_nothing(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 2).await;
    // Ten failed attempts, five times what the delivery limit would allow as returns.
    let handler = Arc::new(Recorder::new(Script::OutageFor(10)));
    let running = start(&queue, &spec, handler.clone(), 1);
    queue.publish(&spec.name, vec![message("m-1")]).await.unwrap();

    handler.wait_for_applied(1).await;
    assert_eq!(
        handler.applied(),
        vec![("m-1".to_owned(), 1)],
        "applied once, on its first delivery"
    );
    assert_eq!(handler.attempts(), 11);
    running.stop().await;
    assert_queue_empty(&queue, &spec.dead_letter_queue()).await;
    assert_queue_empty(&queue, &spec.name).await;
}

async fn poison_is_dead_lettered_at_once_and_the_rest_applies(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    let handler = Arc::new(Recorder::new(Script::Succeed));
    let running = start(&queue, &spec, handler.clone(), 10);
    let mut poison = message("poison");
    poison.kind = "not.a.Kind".to_owned();
    queue
        .publish(&spec.name, vec![message("good-1"), poison, message("good-2")])
        .await
        .unwrap();

    handler.wait_for_applied(2).await;
    running.stop().await;
    let applied: Vec<String> = handler.applied().into_iter().map(|(id, _)| id).collect();
    assert_eq!(applied, ["good-1", "good-2"]);
    let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
    let letter = queues::arrives(dead.as_mut()).await;
    assert_eq!(letter.message.id, "poison");
    assert_eq!(
        letter.message.headers.get("x-first-death-reason").map(String::as_str),
        Some("rejected"),
        "dead-lettered by the consumer, not by the delivery limit"
    );
}

async fn failures_that_are_not_outages_use_the_delivery_limit(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 3).await;
    let handler = Arc::new(Recorder::new(Script::FailFor(vec!["bad"])));
    let running = start(&queue, &spec, handler.clone(), 1);
    queue.publish(&spec.name, vec![message("bad")]).await.unwrap();

    let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
    let letter = queues::arrives(dead.as_mut()).await;
    running.stop().await;
    assert_eq!(letter.message.id, "bad");
    assert_eq!(
        letter.message.headers.get("x-first-death-reason").map(String::as_str),
        Some("delivery_limit")
    );
    assert_eq!(handler.attempts(), 3, "one attempt per delivery, three deliveries");
    assert!(handler.applied().is_empty());
}

async fn a_failed_batch_is_split_so_its_good_messages_apply(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 2).await;
    let handler = Arc::new(Recorder::new(Script::FailFor(vec!["bad"])));
    // Publish first, so that the consumer's first batch holds all three.
    queue
        .publish(&spec.name, vec![message("a"), message("bad"), message("b")])
        .await
        .unwrap();
    let running = start(&queue, &spec, handler.clone(), 10);

    handler.wait_for_applied(2).await;
    let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
    let letter = queues::arrives(dead.as_mut()).await;
    running.stop().await;
    assert_eq!(letter.message.id, "bad");
    let mut applied: Vec<String> = handler.applied().into_iter().map(|(id, _)| id).collect();
    applied.sort();
    assert_eq!(applied, ["a", "b"], "each good message applied once");
    assert!(handler.batch_sizes().contains(&3), "the first batch held all three");
}

async fn shutdown_returns_a_held_batch_to_the_queue(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    let handler = Arc::new(Recorder::new(Script::OutageFor(u32::MAX)));
    let running = start(&queue, &spec, handler.clone(), 1);
    queue.publish(&spec.name, vec![message("held")]).await.unwrap();
    handler.wait_for_attempts(2).await;

    timeout(Duration::from_secs(2), running.stop())
        .await
        .expect("the runner stops promptly while holding a batch");
    let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
    let again = queues::arrives(consumer.as_mut()).await;
    assert_eq!(again.message.id, "held");
    assert!(handler.applied().is_empty());
}

async fn a_bundle_is_applied_as_its_messages_in_batches_of_the_batch_size(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    let handler = Arc::new(Recorder::new(Script::Succeed));
    let running = start(&queue, &spec, handler.clone(), 2);
    let ids = ["b-1", "b-2", "b-3", "b-4", "b-5"];
    queue
        .publish(&spec.name, vec![bundle::pack(ids.map(message).into())])
        .await
        .unwrap();

    handler.wait_for_applied(5).await;
    running.stop().await;
    assert_eq!(
        handler.applied(),
        ids.map(|id| (id.to_owned(), 1)),
        "each message applied once, in order, with its own id"
    );
    assert!(
        handler.batch_sizes().iter().all(|size| *size <= 2),
        "applied in batches of at most the batch size: {:?}",
        handler.batch_sizes()
    );
    assert_queue_empty(&queue, &spec.name).await;
    assert_queue_empty(&queue, &spec.dead_letter_queue()).await;
}

async fn a_bundled_poison_message_is_dead_lettered_alone(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    let handler = Arc::new(Recorder::new(Script::Succeed));
    let running = start(&queue, &spec, handler.clone(), 10);
    let mut poison = message("poison");
    poison.kind = "not.a.Kind".to_owned();
    let packed = bundle::pack(vec![message("good-1"), poison, message("good-2")]);
    queue.publish(&spec.name, vec![packed]).await.unwrap();

    handler.wait_for_applied(2).await;
    let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
    let letter = queues::arrives(dead.as_mut()).await;
    running.stop().await;
    let applied: Vec<String> = handler.applied().into_iter().map(|(id, _)| id).collect();
    assert_eq!(applied, ["good-1", "good-2"]);
    assert_eq!(letter.message.id, "poison", "the poison message alone, not its bundle");
    assert_eq!(letter.message.kind, "not.a.Kind");
    assert_eq!(
        letter.message.headers.get("x-first-death-reason").map(String::as_str),
        Some("rejected"),
        "dead-lettered by the consumer, not by the delivery limit"
    );
    letter.ack().await.unwrap();
    assert_queue_empty(&queue, &spec.name).await;
    assert_queue_empty(&queue, &spec.dead_letter_queue()).await;
}

async fn a_bundled_message_that_fails_goes_back_alone_and_its_bundle_is_acknowledged(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 2).await;
    let handler = Arc::new(Recorder::new(Script::FailFor(vec!["bad"])));
    let running = start(&queue, &spec, handler.clone(), 10);
    let packed = bundle::pack(vec![message("a"), message("bad"), message("b")]);
    queue.publish(&spec.name, vec![packed]).await.unwrap();

    handler.wait_for_applied(2).await;
    let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
    let letter = queues::arrives(dead.as_mut()).await;
    running.stop().await;
    assert_eq!(letter.message.id, "bad", "the failing message alone, not its bundle");
    assert_eq!(
        letter.message.headers.get("x-first-death-reason").map(String::as_str),
        Some("delivery_limit"),
        "retried on its own up to the delivery limit"
    );
    assert_eq!(
        handler.applied(),
        [("a".to_owned(), 1), ("b".to_owned(), 1)],
        "the others applied once: the bundle did not come again"
    );
    // The bundle once (all three), the split (each alone), then `bad` on its own twice.
    assert_eq!(handler.attempts(), 1 + 3 + 2);
    letter.ack().await.unwrap();
    assert_queue_empty(&queue, &spec.name).await;
    assert_queue_empty(&queue, &spec.dead_letter_queue()).await;
}

async fn a_bundle_that_cannot_be_read_is_dead_lettered(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    let handler = Arc::new(Recorder::new(Script::Succeed));
    let running = start(&queue, &spec, handler.clone(), 10);
    let mut broken = bundle::pack(vec![message("a"), message("b")]);
    broken.payload = vec![0xff; 8];
    let id = broken.id.clone();
    queue.publish(&spec.name, vec![broken, message("after")]).await.unwrap();

    handler.wait_for_applied(1).await;
    let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
    let letter = queues::arrives(dead.as_mut()).await;
    running.stop().await;
    assert_eq!(letter.message.id, id);
    assert_eq!(handler.applied(), [("after".to_owned(), 1)]);
}

// ---- Helpers. ----

/// How the test handler behaves.
#[derive(Debug)]
enum Script {
    /// Every apply succeeds.
    Succeed,
    /// The first N applies fail as an outage would; then they succeed.
    OutageFor(u32),
    /// Applies that include one of these ids fail (not an outage); others succeed.
    FailFor(Vec<&'static str>),
}

/// A handler that records what it was asked to apply.
#[derive(Debug)]
struct Recorder {
    script: Script,
    state: Mutex<RecorderState>,
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct RecorderState {
    attempts: u32,
    batch_sizes: Vec<usize>,
    /// (message id, delivery count) of every applied message, in order.
    applied: Vec<(String, u32)>,
}

impl Recorder {
    fn new(script: Script) -> Self {
        Self {
            script,
            state: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn applied(&self) -> Vec<(String, u32)> {
        self.state.lock().unwrap().applied.clone()
    }

    fn attempts(&self) -> u32 {
        self.state.lock().unwrap().attempts
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.state.lock().unwrap().batch_sizes.clone()
    }

    async fn wait_until(&self, done: impl Fn(&RecorderState) -> bool) {
        timeout(ARRIVES, async {
            loop {
                let changed = self.changed.notified();
                if done(&self.state.lock().unwrap()) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .expect("the handler was not called as expected in time");
    }

    async fn wait_for_applied(&self, count: usize) {
        self.wait_until(|state| state.applied.len() >= count).await;
    }

    async fn wait_for_attempts(&self, count: u32) {
        self.wait_until(|state| state.attempts >= count).await;
    }
}

#[async_trait]
impl Handler for Recorder {
    type Item = String;

    fn decode(&self, message: &Message) -> Result<String, Poison> {
        if message.kind == KIND {
            Ok(String::from_utf8_lossy(&message.payload).into_owned())
        } else {
            Err(Poison::new("unexpected_type", format!("kind {}", message.kind)))
        }
    }

    async fn apply(&self, items: &[Received<'_, String>]) -> anyhow::Result<()> {
        let outcome = {
            let mut state = self.state.lock().unwrap();
            state.attempts += 1;
            state.batch_sizes.push(items.len());
            let outcome = match &self.script {
                Script::Succeed => Ok(()),
                Script::OutageFor(failures) if state.attempts <= *failures => {
                    Err(anyhow::Error::new(Unavailable("the database is away".into())))
                }
                Script::OutageFor(_) => Ok(()),
                Script::FailFor(bad) if items.iter().any(|one| bad.contains(&one.message_id)) => {
                    Err(anyhow::anyhow!("a bug: this message breaks the handler"))
                }
                Script::FailFor(_) => Ok(()),
            };
            if outcome.is_ok() {
                for one in items {
                    assert_eq!(one.item, &format!("payload of {}", one.message_id));
                    state.applied.push((one.message_id.to_owned(), one.delivery_count));
                }
            }
            outcome
        };
        self.changed.notify_waiters();
        outcome
    }
}

/// A runner in the background and the token that stops it.
struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn start(queue: &Arc<dyn WorkQueue>, spec: &QueueSpec, handler: Arc<Recorder>, batch_size: usize) -> Running {
    let options = RunnerOptions {
        consumers: 1,
        prefetch: 20,
        batch_size,
        linger: Duration::from_millis(50),
        first_pause: Duration::from_millis(5),
        max_pause: Duration::from_millis(40),
    };
    let shutdown = CancellationToken::new();
    let runner = ConsumerRunner::new(Arc::clone(queue), spec.name.clone(), handler, options);
    let task = tokio::spawn(runner.run(shutdown.clone()));
    Running { shutdown, task }
}

const KIND: &str = "shop.events.v1.Test";

fn message(id: &str) -> Message {
    Message {
        id: id.to_owned(),
        kind: KIND.to_owned(),
        payload: format!("payload of {id}").into_bytes(),
        headers: BTreeMap::new(),
    }
}

async fn declare(queue: &Arc<dyn WorkQueue>, max_deliveries: u32) -> QueueSpec {
    queues::declare_own(queue, "runner", max_deliveries).await
}

async fn assert_queue_empty(queue: &Arc<dyn WorkQueue>, name: &str) {
    let mut consumer = queue.consume(name, 10).await.unwrap();
    if let Ok(delivery) = timeout(QUIET, consumer.next()).await {
        panic!("expected {name} to be empty, got {delivery:?}");
    }
}
