//! Webhook counters, read by `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events held now (queued or in delivery); also the queue bound.
    queued: AtomicU64,
    delivered: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
}

impl WebhookStats {
    /// Appends the Prometheus text exposition of the four webhook series.
    pub fn render(&self, out: &mut String) {
        let series = [
            (
                "shardcast_webhook_queued",
                "gauge",
                "Webhook events held now (queued or in delivery).",
                self.queued(),
            ),
            (
                "shardcast_webhook_delivered_total",
                "counter",
                "Webhook events delivered (2xx answer).",
                self.delivered(),
            ),
            (
                "shardcast_webhook_retries_total",
                "counter",
                "Webhook delivery retries.",
                self.retries.load(Relaxed),
            ),
            (
                "shardcast_webhook_dropped_total",
                "counter",
                "Webhook events dropped (queue full or retries spent).",
                self.dropped(),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    pub fn queued(&self) -> u64 {
        self.queued.load(Acquire)
    }

    /// Takes a place for one more event unless `limit` are held.
    pub(super) fn try_hold(&self, limit: u64) -> bool {
        self.queued
            .fetch_update(AcqRel, Acquire, |n| (n < limit).then_some(n + 1))
            .is_ok()
    }

    /// Gives a place back; true when none is held any more. Saturates: a
    /// submit racing with [`abandon`](Self::abandon) may give back a place
    /// already written off.
    pub(super) fn release(&self) -> bool {
        self.queued
            .fetch_update(AcqRel, Acquire, |n| n.checked_sub(1))
            .is_ok_and(|n| n == 1)
    }

    /// The thread stopped: whatever is still held is lost.
    pub(super) fn abandon(&self) {
        let left = self.queued.swap(0, AcqRel);
        self.dropped.fetch_add(left, Relaxed);
    }

    pub(super) fn deliver_one(&self) {
        self.delivered.fetch_add(1, Relaxed);
    }

    pub(super) fn retry_one(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(super) fn drop_one(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }
}
