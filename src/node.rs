//! What every core of a node shares, read-only after start: configuration,
//! the clientId codec, the mailboxes of all cores, metrics, and the flags
//! that say whether the node is ready or draining. Mutable state belongs to
//! the cores; the only lock here guards the registry file, taken by
//! `/api/register` alone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::client_id::ClientIdCodec;
use crate::config::Config;
use crate::core::mailbox::CoreMsg;
use crate::metrics::Metrics;
use crate::registry::Registry;

pub struct Node {
    pub config: Config,
    pub node_id: u16,
    /// Start time in unix seconds; part of every clientId so that ids of an
    /// earlier run of this node are stale, never reused.
    pub epoch: u32,
    pub codec: ClientIdCodec,
    pub mailboxes: Vec<flume::Sender<CoreMsg>>,
    pub metrics: Metrics,
    pub registry: Mutex<Registry>,
    /// Random key of the messageId generators of this run.
    pub message_key: u64,
    started: AtomicUsize,
    draining: AtomicBool,
}

impl Node {
    pub fn new(
        config: Config,
        codec: ClientIdCodec,
        registry: Registry,
        mailboxes: Vec<flume::Sender<CoreMsg>>,
        message_key: u64,
    ) -> Self {
        let workers = mailboxes.len();
        Self {
            node_id: config.cluster.node_id,
            epoch: unix_seconds() as u32,
            codec,
            mailboxes,
            metrics: Metrics::new(workers),
            registry: Mutex::new(registry),
            message_key,
            started: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            config,
        }
    }

    pub fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    /// A worker is listening.
    pub fn worker_started(&self) {
        self.started.fetch_add(1, Ordering::Release);
    }

    /// Every worker listens and the node is not draining.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Acquire) == self.workers() && !self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts the graceful shutdown: `/readyz` turns 503 and every core is
    /// told to stop accepting and close its connections with 1001.
    pub fn begin_shutdown(&self) {
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        for mb in &self.mailboxes {
            // A full mailbox still gets the message: shutdown must not be lost.
            let _ = mb.send(CoreMsg::Shutdown);
        }
    }
}

pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
