//! Webhook counters, read by `/metrics` and the console.
//!
//! Drops are counted by reason so that an operator can tell a full queue
//! from one system's receiver using up its share, a receiver skipped by its
//! circuit breaker, an event whose retries are spent, and shutdown.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use std::time::Duration;

use crate::metrics::histogram::{self, Histogram};

/// Why an event was dropped: the `reason` label of
/// `shardcast_webhook_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `webhook.queue` events were held already.
    QueueFull,
    /// Its system held its share (half of `webhook.queue`) already.
    SystemShare,
    /// The circuit breaker of its system and URL was open.
    CircuitOpen,
    /// Every attempt failed, or the event or its URL is malformed.
    Failed,
    /// The node stopped before it was delivered.
    Shutdown,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        Self::QueueFull,
        Self::SystemShare,
        Self::CircuitOpen,
        Self::Failed,
        Self::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::SystemShare => "system_share",
            Self::CircuitOpen => "circuit_open",
            Self::Failed => "failed",
            Self::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events held now (in the channel, queued on a lane or in delivery):
    /// the global bound `webhook.queue`, taken by `submit` and given back by
    /// the webhook thread.
    queued: AtomicU64,
    delivered: AtomicU64,
    retries: AtomicU64,
    /// By [`DropReason`], in the order of [`DropReason::ALL`].
    dropped: [AtomicU64; 5],
    /// How long each POST took, answered or not.
    delivery: Histogram,
}

impl WebhookStats {
    /// Appends the Prometheus text exposition of the four webhook series
    /// (the dropped one with a sample per reason).
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
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let name = "shardcast_webhook_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook events dropped, by reason.\n# TYPE {name} counter"
        );
        for reason in DropReason::ALL {
            let value = self.dropped_for(reason);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", reason.label());
        }
        let name = "shardcast_webhook_delivery_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook POSTs, sent to answered (or timed out).\n# TYPE {name} histogram"
        );
        histogram::render(out, name, "", [&self.delivery].into_iter());
    }

    /// One POST took `d`.
    pub fn delivery_took(&self, d: Duration) {
        self.delivery.observe(d);
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    /// Every drop, whatever its reason.
    pub fn dropped(&self) -> u64 {
        self.dropped.iter().map(|n| n.load(Relaxed)).sum()
    }

    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Relaxed)
    }

    pub fn queued(&self) -> u64 {
        self.queued.load(Acquire)
    }

    /// Takes a place for one event; false when `limit` are held already.
    pub(super) fn try_hold(&self, limit: u64) -> bool {
        self.queued
            .fetch_update(AcqRel, Acquire, |n| (n < limit).then_some(n + 1))
            .is_ok()
    }

    /// Gives back `n` places; true when that left none held.
    pub(super) fn release(&self, n: u64) -> bool {
        let before = self
            .queued
            .fetch_update(AcqRel, Acquire, |held| Some(held.saturating_sub(n)))
            .unwrap_or_else(|held| held);
        before <= n
    }

    pub(super) fn deliver_one(&self) {
        self.delivered.fetch_add(1, Relaxed);
    }

    pub(super) fn retry_one(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(super) fn drop_some(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Relaxed);
    }
}
