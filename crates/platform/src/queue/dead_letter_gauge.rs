//! The dead-letter depth gauge: `messaging.queue.dead_letters`, an OpenTelemetry observable
//! gauge on the meter `shop.messaging`, one series per dead-letter queue
//! (`messaging.destination.name`). A dead letter is a message nothing will apply until an
//! operator acts, so any depth above zero is worth an alert. Each service watches the
//! dead-letter queues of the queues it consumes (their consumers are what fills them) and polls
//! their depth periodically: the gauge reports the last reading, and a queue that could not be
//! counted (the broker is down, or the queue is missing) drops out of the gauge until it can.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use opentelemetry::{
    KeyValue,
    metrics::{Meter, ObservableGauge},
};
use tokio_util::sync::CancellationToken;

use super::{QueueError, WorkQueue, dead_letter_queue_name};

type Depths = Arc<Mutex<BTreeMap<String, u64>>>;

/// Polls the depth of some dead-letter queues and reports it as a gauge.
pub struct DeadLetterGauge {
    queue: Arc<dyn WorkQueue>,
    /// The dead-letter queues watched.
    watched: Vec<String>,
    /// The last reading per dead-letter queue, read by the gauge's callback.
    depths: Depths,
    /// Kept for as long as the readings are.
    _gauge: ObservableGauge<u64>,
}

impl fmt::Debug for DeadLetterGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterGauge")
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl DeadLetterGauge {
    /// How often services read the depths.
    pub const INTERVAL: Duration = Duration::from_secs(30);

    /// A gauge of the dead-letter queues of `work_queues`, on the global meter `shop.messaging`
    /// (a no-op until the process configures a meter provider).
    pub fn new<S: Into<String>>(queue: Arc<dyn WorkQueue>, work_queues: impl IntoIterator<Item = S>) -> Self {
        Self::with_meter(&opentelemetry::global::meter("shop.messaging"), queue, work_queues)
    }

    /// As [`DeadLetterGauge::new`], on `meter`.
    pub fn with_meter<S: Into<String>>(
        meter: &Meter,
        queue: Arc<dyn WorkQueue>,
        work_queues: impl IntoIterator<Item = S>,
    ) -> Self {
        let watched: Vec<String> = work_queues
            .into_iter()
            .map(|name| dead_letter_queue_name(&name.into()))
            .collect();
        let depths = Depths::default();
        let readings = Arc::clone(&depths);
        let gauge = meter
            .u64_observable_gauge("messaging.queue.dead_letters")
            .with_description("Messages waiting in a dead-letter queue for an operator (shop-admin)")
            .with_unit("{message}")
            .with_callback(move |observer| {
                let readings = readings.lock().unwrap_or_else(PoisonError::into_inner);
                for (queue, depth) in readings.iter() {
                    observer.observe(*depth, &[KeyValue::new("messaging.destination.name", queue.clone())]);
                }
            })
            .build();
        Self {
            queue,
            watched,
            depths,
            _gauge: gauge,
        }
    }

    /// Reads every watched depth now. Queues that could not be counted are left out of the
    /// gauge; the first error is returned once all were tried.
    pub async fn poll(&self) -> Result<(), QueueError> {
        let mut first_error = None;
        for dead in &self.watched {
            let reading = self.queue.message_count(dead).await;
            let mut depths = self.depths.lock().unwrap_or_else(PoisonError::into_inner);
            match reading {
                Ok(Some(depth)) => {
                    depths.insert(dead.clone(), depth);
                }
                Ok(None) => {
                    depths.remove(dead);
                }
                Err(error) => {
                    depths.remove(dead);
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Polls every `interval` until `shutdown`, the first time at once.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.poll().await {
                tracing::debug!(%error, "could not read the dead-letter queue depths");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
