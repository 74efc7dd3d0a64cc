//! The scenarios: what they set up, the load they offer, and what they report.

pub mod browse;
pub mod flash_sale;
pub mod listing;
pub mod read;

use std::{sync::Arc, time::Duration};

use crate::{
    driver::{self, Limit, Pace, Workload},
    options::Options,
    progress::Progress,
    stats::Recorder,
};

/// How `options` say the load is offered.
pub fn pace(options: &Options) -> Pace {
    options.rate.map_or(Pace::Closed, |rate| Pace::Open { rate })
}

/// Runs `workload` with `users` as `options` say until `limit`, with the progress line labelled
/// `label`; the time it took.
pub async fn timed<W: Workload>(
    label: &str,
    workload: Arc<W>,
    users: Vec<W::User>,
    recorder: &Arc<Recorder>,
    options: &Options,
    limit: Limit,
) -> Duration {
    let _progress = Progress::start(label, Arc::clone(recorder));
    driver::run(workload, users, pace(options), limit).await
}
