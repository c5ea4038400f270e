//! One worker: a monoio runtime pinned to a core, with its own SO_REUSEPORT
//! listener, its connections, their group index and its mailbox.
//!
//! The core that accepts a WebSocket owns it for life. Tasks of a core share
//! its state through `CoreRef` (`Rc<RefCell<Core>>`); a borrow is never held
//! across an `.await`. Other cores reach this state only by mailbox.

pub mod conn;
pub mod event;
pub mod index;
pub mod mailbox;
mod ops;
pub mod slots;
mod worker;

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::metrics::CoreMetrics;
use crate::node::Node;
use crate::push::MessageIdGen;
use crate::registry::SystemEntry;

use conn::Conn;
use event::LocalEvent;
use index::GroupIndex;
use mailbox::CoreMsg;
use slots::Slots;

pub use ops::LINGER;
pub use worker::{bind_listener, run_worker};

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
    dirty: Vec<(u32, u32)>,
    scratch: Vec<u8>,
    ws_out: Vec<u8>,
    this: Weak<RefCell<Core>>,
}

/// The mailbox is over its high-water mark: the caller answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Core {
    pub fn new(node: Arc<Node>, id: u8) -> CoreRef {
        let systems = node
            .registry
            .lock()
            .map(|r| {
                r.systems()
                    .iter()
                    .map(|(k, v)| (Box::from(k.as_str()), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let ids = MessageIdGen::new(node.message_key, id);
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
                dirty: Vec::new(),
                scratch: vec![0; SCRATCH_BYTES],
                ws_out: Vec::new(),
                this: this.clone(),
            })
        })
    }

    pub fn metrics(&self) -> &CoreMetrics {
        self.node.metrics.core(self.id as usize)
    }

    pub fn system(&self, id: &str) -> Option<&SystemEntry> {
        self.systems.get(id)
    }

    /// Hands `msg` to core `target`: handled at once when it is this core,
    /// else through that core's mailbox.
    pub fn route(this: &CoreRef, target: u8, msg: CoreMsg) -> Result<(), Busy> {
        let local = this.borrow().id == target;
        if local {
            let mut core = this.borrow_mut();
            core.handle(msg);
            core.flush();
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
