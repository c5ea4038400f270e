//! What every core of a node shares: read-only after start, the
//! configuration, the clientId codec, the resume-token key, the sending
//! ends of all cores' mailboxes and the metrics; atomics for the counts
//! under the connection limits, each mailbox's queued count and the flags
//! that say whether the node is ready or draining; the cluster view, which
//! the etcd thread updates. Everything else belongs to the cores; the
//! registry file belongs to a thread of its own (`registry::RegistryWriter`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::clock::unix_seconds;

use crate::api::resume_token::ResumeTokens;
use crate::client_id::ClientIdCodec;
use crate::cluster::membership::MembershipHandle;
use crate::cluster::{ClusterView, PeerTable};
use crate::config::Config;
use crate::mailbox::{CoreMsg, MailboxTx};
use crate::metrics::Metrics;
use crate::registry::RegistryWriter;
use crate::registry::SystemEntry;
use crate::webhook::Webhooks;
use crate::ws::{Encoding, Push};

pub struct Node {
    pub config: Config,
    pub node_id: u16,
    /// Start time in unix seconds; part of every clientId so that ids of an
    /// earlier run of this node are stale, never reused.
    pub epoch: u32,
    /// Unix seconds when the node started (`process_start_time_seconds`).
    pub started_at: u64,
    pub codec: ClientIdCodec,
    /// Resume tokens, under a key drawn at random when the node starts.
    pub resume: ResumeTokens,
    pub mailboxes: Vec<MailboxTx>,
    pub metrics: Metrics,
    /// The standalone registry file (None in cluster mode: etcd holds it).
    pub registry: Option<RegistryWriter>,
    /// The systems known at start; cores copy them.
    pub systems: Vec<(String, SystemEntry)>,
    /// Random key of the messageId generators of this run.
    pub message_key: u64,
    /// The etcd thread (cluster mode).
    pub membership: Option<MembershipHandle>,
    /// Peers and lease state (standalone: no peers, always in).
    pub view: Arc<ClusterView>,
    /// The webhook queue, when this node may have webhooks to deliver.
    pub webhooks: Option<Webhooks>,
    /// WebSocket connections open or being admitted (server.max_connections).
    admitted: AtomicUsize,
    /// HTTP connections that are not WebSockets (api.max_http_connections).
    http_connections: AtomicUsize,
    /// Messages from other cores waiting in each core's mailbox, notices
    /// included (counted per batch by the sender, per batch by the receiver):
    /// what the mailbox high-water mark bounds.
    queued: Box<[AtomicUsize]>,
    started: AtomicUsize,
    /// Cores whose drain is over (they close their listeners once all are).
    drained: AtomicUsize,
    /// Cores that gave their history streams to their next owners.
    handed_over: AtomicUsize,
    draining: AtomicBool,
    drain_started: OnceLock<Instant>,
}

/// What `Node::new` is built from: the clientId codec (keyed by the crypto
/// key) and the resume tokens (by a random key), the registry, the cores'
/// mailboxes, the cluster view and the messageId key.
pub type NodeParts = (
    (ClientIdCodec, ResumeTokens),
    Systems,
    Vec<MailboxTx>,
    Arc<ClusterView>,
    u64,
);

/// What a node learned when it joined the cluster.
pub struct ClusterJoin {
    pub node_id: u16,
    pub epoch: u32,
    pub membership: MembershipHandle,
}

/// Where the registry of systems lives.
pub enum Systems {
    /// Standalone: the data-dir file, through its thread, and what it held
    /// at start.
    File(RegistryWriter, Vec<(String, SystemEntry)>),
    /// Cluster: etcd, as read when joining.
    Etcd(Vec<(String, SystemEntry)>),
}

impl Node {
    pub fn new(
        config: Config,
        ((codec, resume), systems, mailboxes, view, message_key): NodeParts,
        join: Option<ClusterJoin>,
        webhooks: Option<Webhooks>,
    ) -> Self {
        let cores = mailboxes.len();
        let (node_id, epoch) = join
            .as_ref()
            .map_or((config.cluster.node_id, unix_seconds() as u32), |j| {
                (j.node_id, j.epoch)
            });
        let membership = join.map(|j| j.membership);
        let membership_metrics = membership
            .as_ref()
            .map(MembershipHandle::metrics)
            .unwrap_or_default();
        let (registry, systems) = match systems {
            Systems::File(writer, list) => (Some(writer), list),
            Systems::Etcd(list) => (None, list),
        };
        Self {
            node_id,
            epoch,
            started_at: unix_seconds(),
            codec,
            resume,
            mailboxes,
            metrics: Metrics::new(cores, membership_metrics),
            registry,
            systems,
            message_key,
            membership,
            view,
            webhooks,
            admitted: AtomicUsize::new(0),
            http_connections: AtomicUsize::new(0),
            queued: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
            started: AtomicUsize::new(0),
            drained: AtomicUsize::new(0),
            handed_over: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            drain_started: OnceLock::new(),
            config,
        }
    }

    /// How pushes are encoded: `ws.compression`, `ws.compression_min_size`.
    pub fn encoding(&self) -> Encoding {
        let ws = &self.config.ws;
        Encoding {
            compress: ws.compression,
            min_size: ws.compression_min_size,
        }
    }

    /// The push of the text frame `frame`, in the forms its recipients'
    /// sockets may take (docs/api.md §10), counted.
    pub fn encode(&self, frame: bytes::Bytes, core: usize) -> Push {
        let encoding = self.encoding();
        let push = Push::encode(frame, encoding);
        if encoding.compress {
            self.metrics
                .core(core)
                .push_encoded(&push, encoding.min_size);
        }
        push
    }

    pub fn cores(&self) -> usize {
        self.mailboxes.len()
    }

    /// Takes a place for a new WebSocket connection; false when
    /// `server.max_connections` are taken. One atomic step, so concurrent
    /// upgrades on several cores cannot overshoot the limit.
    pub fn reserve_connection(&self) -> bool {
        let max = match self.config.server.max_connections {
            0 => usize::MAX,
            n => n,
        };
        reserve(&self.admitted, max)
    }

    pub fn release_connection(&self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }

    /// Messages from other cores waiting in the mailbox of `core`.
    pub fn queued(&self, core: usize) -> usize {
        self.queued
            .get(core)
            .map_or(0, |q| q.load(Ordering::Acquire))
    }

    /// `n` more messages are on their way to `core`'s mailbox.
    pub fn count_in(&self, core: usize, n: usize) {
        if let Some(q) = self.queued.get(core) {
            q.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// `core` took `n` messages counted by `count_in` out of its mailbox.
    pub fn count_out(&self, core: usize, n: usize) {
        if let Some(q) = self.queued.get(core) {
            q.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Takes a place for a new HTTP connection; false when
    /// `api.max_http_connections` are taken.
    pub fn reserve_http(&self) -> bool {
        reserve(&self.http_connections, self.config.api.max_http_connections)
    }

    pub fn release_http(&self) {
        self.http_connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// A core is listening.
    pub fn core_started(&self) {
        self.started.fetch_add(1, Ordering::Release);
    }

    /// Every core listens, the node is in the cluster (when clustered)
    /// and not draining.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Acquire) == self.cores()
            && self.view.is_ready()
            && !self.is_draining()
    }

    pub fn peers(&self) -> Arc<PeerTable> {
        self.view.peers()
    }

    /// What is left of `server.shutdown_timeout` since the drain began.
    pub fn drain_time_left(&self) -> Duration {
        let started = self
            .drain_started
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        (started + self.config.server.shutdown_timeout).saturating_duration_since(Instant::now())
    }

    /// A core has drained its connections (or run out of time).
    pub fn core_drained(&self) {
        self.drained.fetch_add(1, Ordering::AcqRel);
    }

    /// A draining core gave its history streams away (or had none to give).
    pub fn core_handed_over(&self) {
        self.handed_over.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits, up to `limit`, until every core gave its history streams
    /// away: only then may the node leave the cluster (docs/api.md §9).
    pub fn wait_handed_over(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.handed_over.load(Ordering::Acquire) < self.cores() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every core has drained: the listeners may close.
    pub fn all_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire) >= self.cores()
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
        let _ = self.drain_started.set(Instant::now());
        for mb in &self.mailboxes {
            // A full mailbox still gets the message: shutdown must not be lost.
            let _ = mb.send(CoreMsg::Shutdown);
        }
    }
}

/// One more on `counter` unless it is at `max`, in one atomic step (so that
/// concurrent cores cannot overshoot).
fn reserve(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}
