//! Running one queue test against each adapter: RabbitMQ on loopback (with every queue the test
//! declares deleted afterwards, pass or fail) and the in-process queue.

use std::{
    future::Future,
    panic,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::timeout;

use crate::queue::{
    AmqpQueue, Consumer, Delivery, MemoryQueue, Message, QueueError, QueueSpec, WorkQueue, dead_letter_queue_name,
};

/// How long a delivery that must come may take.
pub const ARRIVES: Duration = Duration::from_secs(5);

/// Declares a queue of the test's own (named `<prefix>_<random>`) with `max_deliveries`.
pub async fn declare_own(queue: &Arc<dyn WorkQueue>, prefix: &str, max_deliveries: u32) -> QueueSpec {
    let spec = QueueSpec::new(super::unique_name(prefix)).with_max_deliveries(max_deliveries);
    queue.declare(&spec).await.expect("declaring a test queue");
    spec
}

/// The next delivery, which must come within [`ARRIVES`].
pub async fn arrives(consumer: &mut dyn Consumer) -> Delivery {
    timeout(ARRIVES, consumer.next())
        .await
        .expect("no delivery arrived in time")
        .expect("the consumer failed")
}

/// Runs `test` on a fresh in-process queue, failing it after `limit`.
pub async fn run_on_memory<F>(limit: Duration, test: impl FnOnce(Arc<dyn WorkQueue>) -> F)
where
    F: Future<Output = ()>,
{
    super::init_test_logging();
    timeout(limit, test(Arc::new(MemoryQueue::new())))
        .await
        .expect("the test took too long");
}

/// Runs `test` against RabbitMQ, failing it after `limit`, then deletes the queues it
/// declared (pass or fail).
pub async fn run_on_rabbitmq<F>(limit: Duration, test: impl FnOnce(Arc<dyn WorkQueue>) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    super::init_test_logging();
    let url = super::amqp_url();
    let adapter = AmqpQueue::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("RabbitMQ must answer: {error}"));
    let tracked = Arc::new(TrackedQueue::new(Arc::new(adapter)));
    let outcome = tokio::spawn(timeout(limit, test(tracked.clone()))).await;
    super::delete_queues(&tracked.declared()).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_elapsed)) => panic!("the test took longer than {limit:?}"),
        Err(error) => panic::resume_unwind(error.into_panic()),
    }
}

/// A work queue that records the queues declared through it, so they can be deleted afterwards.
#[derive(Debug)]
pub struct TrackedQueue {
    inner: Arc<dyn WorkQueue>,
    declared: Mutex<Vec<String>>,
}

impl TrackedQueue {
    /// Tracks what is declared through `inner`.
    pub fn new(inner: Arc<dyn WorkQueue>) -> Self {
        Self {
            inner,
            declared: Mutex::default(),
        }
    }

    /// The queues (and their dead-letter queues) declared so far.
    pub fn declared(&self) -> Vec<String> {
        self.declared.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl WorkQueue for TrackedQueue {
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        self.declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([spec.name.clone(), dead_letter_queue_name(&spec.name)]);
        self.inner.declare(spec).await
    }

    async fn publish(&self, queue: &str, messages: Vec<Message>) -> Result<(), QueueError> {
        self.inner.publish(queue, messages).await
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        self.inner.consume(queue, prefetch).await
    }

    async fn ready(&self) -> bool {
        self.inner.ready().await
    }

    fn system(&self) -> &'static str {
        self.inner.system()
    }

    async fn message_count(&self, queue: &str) -> Result<Option<u64>, QueueError> {
        self.inner.message_count(queue).await
    }
}
