//! The consumer loops: each takes a batch of deliveries (`next_batch`), dead-letters at once
//! what can never be applied, applies the rest in one transaction, and settles the batch only
//! after the commit: ack on success; on failure each delivery is tried again alone, so that one
//! bad message cannot take its batch-mates down with it, and what still fails is returned to
//! the queue after a pause (the queue's delivery limit then dead-letters what keeps failing).
//! On shutdown, a batch being applied is finished and settled before the loop returns.

use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use shop_platform::{
    outbox::OutboxRelay,
    queue::{Delivery, QueueError, QueueSpec, WorkQueue},
    telemetry::propagation,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    command::{self, Command, Work},
    metrics::Metrics,
    store::{self, Applied, Pending},
};
use crate::config::StockConfig;

/// The first pause after a failure; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest pause after repeated failures.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// The stock reservation worker: consumers of `stock.reserve` and `stock.release`.
#[derive(Debug)]
pub struct StockWorker {
    db: DatabaseConnection,
    queue: Arc<dyn WorkQueue>,
    config: StockConfig,
    relay: Option<OutboxRelay>,
    metrics: Metrics,
}

/// A decoded delivery waiting for its batch's transaction.
struct Decoded {
    delivery: Delivery,
    command: Command,
    span: tracing::Span,
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
        }
    }

    /// Wakes `relay` after each commit, so answers leave without waiting for its next poll.
    pub fn waking(mut self, relay: OutboxRelay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Declares the queues the worker reads and answers on (idempotent).
    pub async fn declare(&self) -> Result<(), QueueError> {
        for name in [
            &self.config.reserve_queue,
            &self.config.release_queue,
            &self.config.results_queue,
        ] {
            self.queue.declare(&QueueSpec::new(name.as_str())).await?;
        }
        Ok(())
    }

    /// Consumes until `shutdown` is cancelled: `workers` consumers on each queue.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let worker = Arc::new(self);
        let mut consumers = JoinSet::new();
        for _ in 0..worker.config.workers {
            for work in [Work::Reserve, Work::Release] {
                consumers.spawn(Arc::clone(&worker).consume(work, shutdown.clone()));
            }
        }
        while let Some(joined) = consumers.join_next().await {
            joined?;
        }
        Ok(())
    }

    fn queue_name(&self, work: Work) -> &str {
        match work {
            Work::Reserve => &self.config.reserve_queue,
            Work::Release => &self.config.release_queue,
        }
    }

    async fn consume(self: Arc<Self>, work: Work, shutdown: CancellationToken) {
        let queue = self.queue_name(work).to_owned();
        let mut failures = 0u32;
        let mut consumer = loop {
            match self.queue.consume(&queue, self.config.prefetch()).await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%queue, %error, "cannot consume yet");
                    if !pause(&shutdown, failures).await {
                        return;
                    }
                }
            }
        };
        failures = 0;
        tracing::debug!(%queue, "stock consumer started");
        loop {
            // Only the wait for deliveries is cut short by shutdown; a batch in hand is finished.
            let batch = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                batch = consumer.next_batch(self.config.batch_size, self.config.linger) => batch,
            };
            match batch {
                Ok(deliveries) => {
                    if self.handle(work, deliveries).await {
                        failures = 0;
                    } else {
                        failures = failures.saturating_add(1);
                        if !pause(&shutdown, failures).await {
                            break;
                        }
                    }
                }
                Err(QueueError::Closed) => break,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%queue, %error, "receiving from the queue failed");
                    if !pause(&shutdown, failures).await {
                        break;
                    }
                }
            }
        }
        // Dropping the consumer returns any delivery it still held to the queue.
        drop(consumer);
        tracing::debug!(%queue, "stock consumer stopped");
    }

    /// Applies and settles one batch; `false` if some of it failed and went back to the queue.
    async fn handle(&self, work: Work, deliveries: Vec<Delivery>) -> bool {
        let queue = self.queue_name(work);
        let mut decoded = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match command::decode(work, &delivery.message) {
                Ok(command) => {
                    let span = tracing::info_span!(
                        "stock.apply",
                        otel.kind = "consumer",
                        messaging.destination.name = %queue,
                        messaging.message.id = %delivery.message.id,
                        order_id = %command.order_id(),
                        trace_id = tracing::field::Empty,
                    );
                    propagation::set_remote_parent(&span, propagation::extract_message(&delivery.message.headers));
                    decoded.push(Decoded {
                        delivery,
                        command,
                        span,
                    });
                }
                Err(error) => {
                    tracing::warn!(
                        %queue,
                        message_id = %delivery.message.id,
                        delivery_count = delivery.delivery_count,
                        %error,
                        "dead-lettering a message that can never be applied"
                    );
                    self.metrics.dead_lettered(work, error.reason());
                    settle(delivery.dead_letter().await, queue);
                }
            }
        }
        if decoded.is_empty() {
            return true;
        }
        match self.apply(work, &decoded).await {
            Ok(()) => {
                for one in decoded {
                    settle(one.delivery.ack().await, queue);
                }
                true
            }
            Err(error) if decoded.len() > 1 => {
                tracing::warn!(%queue, size = decoded.len(), error = format!("{error:#}"), "a stock batch failed; applying its messages one by one");
                let mut all_ok = true;
                let mut failed = Vec::new();
                for one in decoded {
                    match self.apply(work, std::slice::from_ref(&one)).await {
                        Ok(()) => settle(one.delivery.ack().await, queue),
                        Err(error) => {
                            all_ok = false;
                            tracing::warn!(%queue, message_id = %one.delivery.message.id, delivery_count = one.delivery.delivery_count, error = format!("{error:#}"), "a stock message failed; it goes back to the queue");
                            failed.push(one.delivery);
                        }
                    }
                }
                for delivery in failed {
                    settle(delivery.retry().await, queue);
                }
                all_ok
            }
            Err(error) => {
                if let Some(one) = decoded.pop() {
                    tracing::warn!(%queue, message_id = %one.delivery.message.id, delivery_count = one.delivery.delivery_count, error = format!("{error:#}"), "a stock message failed; it goes back to the queue");
                    settle(one.delivery.retry().await, queue);
                }
                false
            }
        }
    }

    /// One transaction for `batch`; then the relay is woken for the answers.
    async fn apply(&self, work: Work, batch: &[Decoded]) -> anyhow::Result<()> {
        let pending: Vec<Pending<'_>> = batch
            .iter()
            .map(|one| Pending {
                message_id: &one.delivery.message.id,
                command: &one.command,
                span: &one.span,
            })
            .collect();
        let applied = store::apply_batch(&self.db, &self.config.results_queue, &pending).await;
        let applied = match applied {
            Ok(applied) => applied,
            Err(error) => {
                self.metrics.batch_failed(work);
                return Err(anyhow::Error::new(error).context("applying a stock batch"));
            }
        };
        for (one, result) in batch.iter().zip(&applied) {
            one.span
                .in_scope(|| tracing::debug!(outcome = ?result, "stock message applied"));
        }
        self.metrics.applied(work, &applied);
        if applied.iter().any(|one| matches!(one, Applied::Done(_)))
            && let Some(relay) = &self.relay
        {
            relay.wake();
        }
        Ok(())
    }
}

/// Settling fails only when the delivery's channel is gone; the broker then redelivers the
/// message, and the inbox makes the redelivery a no-op.
fn settle(result: Result<(), QueueError>, queue: &str) {
    if let Err(error) = result {
        tracing::debug!(%queue, %error, "could not settle a delivery; it will come again");
    }
}

/// Sleeps after the `failures`-th failure in a row; `false` if shutdown came first.
async fn pause(shutdown: &CancellationToken, failures: u32) -> bool {
    let pause = FIRST_PAUSE
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_PAUSE);
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(pause) => true,
    }
}
