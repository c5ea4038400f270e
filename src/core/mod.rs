//! One worker: a monoio runtime pinned to a core, with its own SO_REUSEPORT
//! listener, its connections, their group index and its mailbox.
//!
//! The core that accepts a WebSocket owns it for life. Tasks of a core share
//! its state through `CoreRef` (`Rc<RefCell<Core>>`); a borrow is never held
//! across an `.await`. Other cores reach this state only by mailbox.

mod chat;
pub mod conn;
pub mod event;
mod hooks;
pub mod index;
mod links;
pub mod mailbox;
mod ops;
pub mod out_queue;
pub mod rate;
pub mod slots;
mod worker;

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;

use crate::cluster::link::Credentials;
use crate::cluster::CoreCluster;
use crate::metrics::CoreMetrics;
use crate::node::Node;
use crate::push::MessageIdGen;
use crate::registry::SystemEntry;

use conn::Conn;
use event::LocalEvent;
use index::GroupIndex;
use mailbox::{reply_channel, CoreMsg, Reply};
use slots::Slots;

pub use ops::LINGER;
pub use worker::{bind_listener, ensure_port_free, run_worker};

pub type CoreRef = Rc<RefCell<Core>>;

/// Mailbox depth past which API requests are refused with 503 rather than
/// queued without bound behind an overloaded core.
const MAILBOX_HIGH_WATER: usize = 65_536;

/// Mailbox messages handled between two flushes.
const BATCH: usize = 256;

/// Size of the per-core buffer every WebSocket read lands in.
const SCRATCH_BYTES: usize = 64 * 1024;

pub struct Core {
    pub id: u8,
    pub node: Arc<Node>,
    pub conns: Slots<Conn>,
    pub index: GroupIndex,
    /// This core's copy of the registry of systems.
    pub systems: HashMap<Box<str>, SystemEntry>,
    pub ids: MessageIdGen,
    pub shutdown: Rc<LocalEvent>,
    /// WebSocket reader tasks alive (lingering ones included).
    pub ws_tasks: usize,
    /// Links and peers (cluster mode only).
    pub cluster: Option<CoreCluster>,
    dirty: Vec<(u32, u32)>,
    scratch: Vec<u8>,
    /// Client messages read from one connection, handled after the read.
    inbox: Vec<tungstenite::Utf8Bytes>,
    /// Start of this core's millisecond clock (rate buckets).
    clock: Instant,
    ws_out: Vec<u8>,
    this: Weak<RefCell<Core>>,
}

/// The mailbox is over its high-water mark: the caller answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Core {
    pub fn new(node: Arc<Node>, id: u8) -> CoreRef {
        let systems = node
            .systems
            .iter()
            .map(|(k, v)| (Box::from(k.as_str()), v.clone()))
            .collect();
        let ids = MessageIdGen::new(node.message_key, id);
        let cluster = node.config.cluster.enabled.then(|| {
            let cfg = &node.config.cluster;
            let creds = Credentials {
                cluster: cfg.name.clone(),
                secret: cfg.secret.clone(),
                node: node.node_id,
                core: id,
            };
            CoreCluster::new(creds, cfg.request_timeout, node.peers())
        });
        Rc::new_cyclic(|this| {
            RefCell::new(Core {
                id,
                node,
                conns: Slots::default(),
                index: GroupIndex::default(),
                systems,
                ids,
                shutdown: Rc::new(LocalEvent::default()),
                ws_tasks: 0,
                cluster,
                dirty: Vec::new(),
                scratch: vec![0; SCRATCH_BYTES],
                inbox: Vec::new(),
                clock: Instant::now(),
                ws_out: Vec::new(),
                this: this.clone(),
            })
        })
    }

    pub fn metrics(&self) -> &CoreMetrics {
        self.node.metrics.core(self.id as usize)
    }

    /// Milliseconds since this core started, wrapping after 49 days.
    fn clock_ms(&self) -> u32 {
        self.clock.elapsed().as_millis() as u32
    }

    pub fn system(&self, id: &str) -> Option<&SystemEntry> {
        self.systems.get(id)
    }

    /// Hands `msg` to core `target`: handled at once when it is this core,
    /// else through that core's mailbox. What a local message queues is
    /// written by the caller's next `flush` (the HTTP loop flushes once per
    /// batch of pipelined requests, so their pushes share one write per
    /// connection).
    pub fn route(this: &CoreRef, target: u8, msg: CoreMsg) -> Result<(), Busy> {
        let local = this.borrow().id == target;
        if local {
            this.borrow_mut().handle(msg);
            return Ok(());
        }
        let core = this.borrow();
        let mailbox = core.node.mailboxes.get(target as usize).ok_or(Busy)?;
        if mailbox.len() > MAILBOX_HIGH_WATER {
            return Err(Busy);
        }
        mailbox.send(msg).map_err(|_| Busy)
    }

    /// Sends one message to every core (built by `make` for each).
    pub fn broadcast(this: &CoreRef, make: impl Fn() -> CoreMsg) -> Result<(), Busy> {
        let workers = this.borrow().node.workers();
        (0..workers).try_for_each(|c| Self::route(this, c as u8, make()))
    }

    /// Asks every core of this node and collects their answers.
    pub async fn gather_local<T>(
        this: &CoreRef,
        make: impl Fn(Reply<T>) -> CoreMsg,
    ) -> Result<Vec<T>, Busy> {
        let workers = this.borrow().node.workers();
        let mut pending = Vec::with_capacity(workers);
        for c in 0..workers {
            let (tx, rx) = reply_channel();
            Self::route(this, c as u8, make(tx))?;
            pending.push(rx);
        }
        let mut answers = Vec::with_capacity(workers);
        for rx in pending {
            answers.push(rx.recv_async().await.map_err(|_| Busy)?);
        }
        Ok(answers)
    }

    /// Like `broadcast`, from inside the core: other cores by mailbox (never
    /// refused: internal notices must not be lost), this core directly.
    fn broadcast_from_inside(&mut self, make: impl Fn() -> CoreMsg) {
        let node = self.node.clone();
        for (i, mailbox) in node.mailboxes.iter().enumerate() {
            if i == self.id as usize {
                self.handle(make());
            } else {
                let _ = mailbox.send(make());
            }
        }
    }
}
