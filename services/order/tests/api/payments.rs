//! The built-in payment provider, counting what it is asked: captures per order and per
//! order-service instance, and refunds.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use shop_order::{
    TestPaymentProvider,
    payment::{Capture, CaptureOutcome, PaymentProvider, Refund},
};
use uuid::Uuid;

/// The total the tests' provider declines (the built-in provider's trigger, set as an operator
/// would with `SHOP_PAYMENT_DECLINE_AMOUNT=402`).
pub const DECLINE_AMOUNT: i64 = 402;

/// What every instance's provider was asked.
#[derive(Debug, Default)]
pub struct CountingPayments {
    /// (order, instance) of each capture asked.
    captures: Mutex<Vec<(Uuid, usize)>>,
    refunds: Mutex<Vec<(Uuid, i64)>>,
    /// While set, the provider does not answer (a hung provider): calls wait until it clears.
    hung: AtomicBool,
    /// Calls that have reached the provider and are waiting for it to answer.
    waiting: AtomicUsize,
}

impl CountingPayments {
    /// Makes the provider hang (`true`) or answer again (`false`). Hung calls are counted only
    /// once they are answered.
    pub fn hang(&self, hung: bool) {
        self.hung.store(hung, Ordering::SeqCst);
    }

    async fn answer_when_not_hung(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while self.hung.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Returns once a call has reached the provider (and, while it is hung, waits there).
    pub async fn wait_until_asked(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.waiting.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the provider was never asked");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The provider of order-service instance `instance`, counting into `self`.
    pub fn for_instance(self: &Arc<Self>, instance: usize) -> Arc<dyn PaymentProvider> {
        Arc::new(Counted {
            counts: Arc::clone(self),
            instance,
        })
    }

    /// Captures asked for `order`.
    pub fn captures(&self, order: Uuid) -> usize {
        self.captures
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| *id == order)
            .count()
    }

    /// Captures asked in all, by instance.
    pub fn captures_by_instance(&self) -> HashMap<usize, usize> {
        let mut counts = HashMap::new();
        for (_, instance) in self.captures.lock().unwrap().iter() {
            *counts.entry(*instance).or_default() += 1;
        }
        counts
    }

    /// Refunds given for `order`.
    pub fn refunds(&self, order: Uuid) -> Vec<i64> {
        let refunds = self.refunds.lock().unwrap();
        refunds
            .iter()
            .filter(|(id, _)| *id == order)
            .map(|(_, amount)| *amount)
            .collect()
    }
}

/// One instance's provider: the built-in one, counted.
#[derive(Debug)]
struct Counted {
    counts: Arc<CountingPayments>,
    instance: usize,
}

#[async_trait]
impl PaymentProvider for Counted {
    async fn capture(&self, capture: &Capture) -> anyhow::Result<CaptureOutcome> {
        self.counts.answer_when_not_hung().await;
        self.counts
            .captures
            .lock()
            .unwrap()
            .push((capture.order_id, self.instance));
        TestPaymentProvider::new(Some(DECLINE_AMOUNT)).capture(capture).await
    }

    async fn refund(&self, refund: &Refund) -> anyhow::Result<String> {
        self.counts.answer_when_not_hung().await;
        self.counts
            .refunds
            .lock()
            .unwrap()
            .push((refund.order_id, refund.amount));
        Ok(format!("counted-{}", refund.refund_id))
    }
}
