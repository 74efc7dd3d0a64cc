//! Payments go through a provider behind [`PaymentProvider`]. The built-in [`TestPaymentProvider`]
//! needs no account anywhere: it approves every capture except the documented test trigger, an
//! order total equal to `SHOP_PAYMENT_DECLINE_AMOUNT` (402 minor units by default), which it
//! declines; refunds always succeed.
//!
//! Captures and refunds are asked after the commit that requested them, outside any
//! transaction, and their answers recorded in a transaction of their own (`settlement`); an
//! attempt cut short before its record is asked again: a provider must treat the given key
//! (the order id for a capture, the refund id for a refund) as an idempotency key.

use async_trait::async_trait;
use uuid::Uuid;

/// A capture to take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// The order paid for; also the capture's idempotency key.
    pub order_id: Uuid,
    /// The amount in minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// A refund to give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    /// The refund's id; also its idempotency key.
    pub refund_id: Uuid,
    /// The order whose capture is refunded.
    pub order_id: Uuid,
    /// The amount in minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// What the provider said to a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// The money was taken; the provider's reference for it.
    Captured {
        /// The provider's id of the capture.
        reference: String,
    },
    /// The provider refused; the order will not be paid.
    Declined {
        /// The provider's reason, for the log.
        reason: String,
    },
}

/// A payment provider.
#[async_trait]
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// Captures `capture.amount`. An `Err` means the provider could not be asked (try again
    /// later), not a decline.
    async fn capture(&self, capture: &Capture) -> anyhow::Result<CaptureOutcome>;

    /// Refunds part or all of a capture; returns the provider's reference for the refund.
    async fn refund(&self, refund: &Refund) -> anyhow::Result<String>;
}

/// The built-in provider: approves, except captures of exactly the decline amount.
#[derive(Clone, Debug)]
pub struct TestPaymentProvider {
    decline_amount: Option<i64>,
}

impl TestPaymentProvider {
    /// A provider declining captures of `decline_amount` (none when `None`).
    pub fn new(decline_amount: Option<i64>) -> Self {
        Self { decline_amount }
    }
}

#[async_trait]
impl PaymentProvider for TestPaymentProvider {
    async fn capture(&self, capture: &Capture) -> anyhow::Result<CaptureOutcome> {
        if self.decline_amount == Some(capture.amount) {
            return Ok(CaptureOutcome::Declined {
                reason: format!("test provider declines {} {}", capture.amount, capture.currency),
            });
        }
        Ok(CaptureOutcome::Captured {
            reference: format!("test-capture-{}", capture.order_id),
        })
    }

    async fn refund(&self, refund: &Refund) -> anyhow::Result<String> {
        Ok(format!("test-refund-{}", refund.refund_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(amount: i64) -> Capture {
        Capture {
            order_id: Uuid::nil(),
            amount,
            currency: "KRW".into(),
        }
    }

    #[tokio::test]
    async fn declines_only_the_trigger_amount() {
        let provider = TestPaymentProvider::new(Some(402));
        assert!(matches!(
            provider.capture(&capture(402)).await.ok(),
            Some(CaptureOutcome::Declined { .. })
        ));
        assert!(matches!(
            provider.capture(&capture(403)).await.ok(),
            Some(CaptureOutcome::Captured { .. })
        ));
        let lenient = TestPaymentProvider::new(None);
        assert!(matches!(
            lenient.capture(&capture(402)).await.ok(),
            Some(CaptureOutcome::Captured { .. })
        ));
    }
}
