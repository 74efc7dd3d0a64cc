//! The stock worker's consumers: one [`ConsumerRunner`] per inbound queue, each applying
//! batches of decoded commands in one transaction ([`store::apply_batch`]). The runner does the
//! rest, as for every consumer in shop: poison to the dead-letter queue at once, outages waited
//! out with the batch held, other failures retried message by message, ack after commit.

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::DatabaseConnection;
use shop_platform::{
    outbox::OutboxRelay,
    queue::{
        Message, QueueError, QueueSpec, WorkQueue,
        runner::{ConsumerRunner, Handler, Poison, Received, RunnerOptions},
    },
};
use tokio_util::sync::CancellationToken;

use super::{
    command::{self, Command, Work},
    ledger::Outcome,
    metrics::Metrics,
    store::{self, Applied, Pending},
};
use crate::config::StockConfig;

/// The stock reservation worker: consumers of `stock.reserve` and `stock.release`.
#[derive(Debug)]
pub struct StockWorker {
    db: DatabaseConnection,
    queue: Arc<dyn WorkQueue>,
    config: StockConfig,
    relay: Option<OutboxRelay>,
    metrics: Metrics,
    dead_letter_max_length: u32,
}

/// A decoded message.
#[derive(Debug)]
pub struct Decoded {
    command: Command,
}

impl StockWorker {
    /// A worker applying work from `queue` to `db`, as `config` says.
    pub fn new(db: DatabaseConnection, queue: Arc<dyn WorkQueue>, config: StockConfig) -> Self {
        Self {
            db,
            queue,
            config,
            relay: None,
            metrics: Metrics::new(),
            dead_letter_max_length: shop_platform::queue::DEFAULT_DEAD_LETTER_MAX_LENGTH,
        }
    }

    /// Declares the queues with dead-letter queues of at most `max_length` messages.
    pub fn dead_letter_max_length(mut self, max_length: u32) -> Self {
        self.dead_letter_max_length = max_length;
        self
    }

    /// The queues whose dead letters come from this worker's consumers.
    pub fn consumed_queues(&self) -> [String; 2] {
        [self.config.queues.reserve.clone(), self.config.queues.release.clone()]
    }

    /// Wakes `relay` after each commit, so answers leave without waiting for its next poll.
    pub fn waking(mut self, relay: OutboxRelay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Declares the queues the worker reads and answers on (idempotent).
    pub async fn declare(&self) -> Result<(), QueueError> {
        let specs = self
            .config
            .queues
            .names()
            .map(|name| QueueSpec::new(name).with_dead_letter_max_length(self.dead_letter_max_length));
        self.queue.declare_all(&specs).await
    }

    /// Consumes until `shutdown` is cancelled: `workers` consumers on each queue.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let worker = Arc::new(self);
        let options = RunnerOptions {
            consumers: worker.config.workers,
            prefetch: worker.config.prefetch(),
            batch_size: worker.config.batch_size,
            linger: worker.config.linger,
            ..RunnerOptions::default()
        };
        let runners = [Work::Reserve, Work::Release].map(|work| {
            let handler = Arc::new(WorkHandler {
                worker: Arc::clone(&worker),
                work,
            });
            ConsumerRunner::new(
                Arc::clone(&worker.queue),
                worker.queue_name(work),
                handler,
                options.clone(),
            )
            .run(shutdown.clone())
        });
        futures::future::join_all(runners).await;
        Ok(())
    }

    fn queue_name(&self, work: Work) -> &str {
        match work {
            Work::Reserve => &self.config.queues.reserve,
            Work::Release => &self.config.queues.release,
        }
    }
}

/// The worker's handler for one of its two queues.
struct WorkHandler {
    worker: Arc<StockWorker>,
    work: Work,
}

#[async_trait]
impl Handler for WorkHandler {
    type Item = Decoded;

    fn decode(&self, message: &Message) -> Result<Decoded, Poison> {
        match command::decode(self.work, message) {
            Ok(command) => {
                // On the delivery's span (the runner's `process <queue>`), for traces and logs.
                let span = tracing::Span::current();
                span.record("shop.order.id", tracing::field::display(command.order_id()));
                let products: Vec<String> = command.lines().iter().map(|line| line.product_id.to_string()).collect();
                span.record("shop.product.ids", products.join(","));
                Ok(Decoded { command })
            }
            Err(error) => Err(Poison::new(error.reason(), error.to_string())),
        }
    }

    fn poison_reasons(&self) -> &'static [&'static str] {
        command::DecodeError::REASONS
    }

    /// One transaction for the batch; then the relay is woken for the answers.
    async fn apply(&self, batch: &[Received<'_, Decoded>]) -> anyhow::Result<()> {
        let worker = &self.worker;
        let pending: Vec<Pending<'_>> = batch
            .iter()
            .map(|one| Pending {
                message_id: one.message_id,
                command: &one.item.command,
                span: one.span,
            })
            .collect();
        let applied = match store::apply_batch(&worker.db, &worker.config.queues.results, &pending).await {
            Ok(applied) => applied,
            Err(error) => {
                worker.metrics.batch_failed(self.work);
                return Err(anyhow::Error::new(error).context("applying a stock batch"));
            }
        };
        for (one, result) in batch.iter().zip(&applied) {
            one.span.record("shop.outcome", outcome_label(result));
            one.span
                .in_scope(|| tracing::debug!(outcome = ?result, "stock message applied"));
        }
        worker.metrics.applied(self.work, &applied);
        if applied.iter().any(|one| matches!(one, Applied::Done(_)))
            && let Some(relay) = &worker.relay
        {
            relay.wake();
        }
        Ok(())
    }
}

/// What a message came to, as traces show it (`shop.outcome`).
fn outcome_label(applied: &Applied) -> &'static str {
    match applied {
        Applied::Duplicate => "duplicate",
        Applied::Done(Outcome::Reserved | Outcome::AlreadyReserved) => "reserved",
        Applied::Done(Outcome::Rejected(_) | Outcome::AlreadyRejected(_)) => "rejected",
        Applied::Done(Outcome::Released(_) | Outcome::AlreadyReleased) => "released",
    }
}
