//! The depth gauge of the work queues: `messaging.queue.depth`, one series per queue a process
//! consumes (`messaging.destination.name`), the messages ready for a consumer (those no
//! consumer holds). A depth that keeps growing means the consumers fall behind (or are down);
//! with the consume rate (`messaging.process.duration`'s count) it says how long the backlog
//! takes to clear. Polled like the dead-letter depths ([`super::DeadLetterGauge`]): a queue that
//! could not be counted drops out of the gauge until it can.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::WorkQueue;
use crate::telemetry::metrics::{self, PolledGauge};

/// Polls the depth of the queues a process consumes.
#[derive(Debug)]
pub struct QueueDepthGauge {
    queue: Arc<dyn WorkQueue>,
    watched: Vec<String>,
}

fn gauge() -> &'static PolledGauge {
    static GAUGE: OnceLock<PolledGauge> = OnceLock::new();
    GAUGE.get_or_init(|| {
        PolledGauge::new(
            "messaging.queue.depth",
            "{message}",
            "Messages ready in a work queue this process consumes.",
        )
    })
}

impl QueueDepthGauge {
    /// A gauge of `work_queues` on `queue`'s broker.
    pub fn new<S: Into<String>>(queue: Arc<dyn WorkQueue>, work_queues: impl IntoIterator<Item = S>) -> Self {
        Self {
            queue,
            watched: work_queues.into_iter().map(Into::into).collect(),
        }
    }

    /// Reads every watched depth now (one passive declare each on RabbitMQ). Queues that could
    /// not be counted are left out of the gauge; the first error is returned once all were tried.
    pub async fn poll(&self) -> anyhow::Result<()> {
        let mut first_error = None;
        for name in &self.watched {
            let labels = [("messaging.destination.name", name.as_str())];
            match self.queue.message_count(name).await {
                Ok(Some(depth)) => gauge().set(&labels, depth as f64),
                Ok(None) => gauge().remove(&labels),
                Err(error) => {
                    gauge().remove(&labels);
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), |error| Err(error.into()))
    }

    /// Polls every `interval` until `shutdown`, the first time at once.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        metrics::poll_every("messaging.queue.depth", interval, shutdown, || self.poll()).await;
    }
}
