//! One core: a monoio runtime's share of the node — the WebSocket
//! connections it accepted, their group index, its links to the other
//! nodes, and what it does when its mailbox, a socket or a link speaks.
//!
//! The core that accepts a WebSocket owns it for life. Tasks of a core share
//! its state through `CoreRef` (`Rc<RefCell<Core>>`); a borrow is never held
//! across an `.await`. Other cores reach this state only through its mailbox
//! (`mailbox::CoreMsg`), other nodes only through a link.
//!
//! The files, by what they own:
//! - `conn/`: one WebSocket connection — its state, codec and outgoing
//!   queue — and the core's reader task, which reads all of them;
//! - `slots`, `index`, `rate`, `event`: the slab of connections, the
//!   group/user/system index, the client-message bucket, a one-shot event;
//! - `lifecycle`, `read`, `write`: opening and closing connections, what
//!   they send us (`read::Reader`: the epoll instance, the socket count,
//!   the buffers lent to each read), and batched writing to them
//!   (`write::Writer`: the dirty list, the connections marked to close,
//!   the flusher's state);
//! - `replay`, `keep`, `resume`: the per-core replay log and each
//!   connection's place in it, what the core keeps in it as it works, and
//!   connections detached by a drop and attached again;
//! - `handle`: the mailbox messages, executed on this core's connections;
//! - `dispatch`: reaching the other cores of this node (`Dispatch`: the
//!   outboxes, the mailbox, the stop event);
//! - `locate`, `send`: where a clientId lives, and sends and operations
//!   that reach connections wherever they are (this core, another core,
//!   another node);
//! - `peers/`, `peer_links`, `peer_frames`: this core's share of the
//!   cluster (`Peers`: its view of the peers, the requests it waits on,
//!   frames held for a peer whose link is not up yet, the links and their
//!   buffers), the tasks that keep the links up, and the frames that arrive
//!   on them;
//! - `history/`: group history — the streams this core owns, and its
//!   connections' reads of streams wherever they live;
//! - `chat`, `hooks`: client messages and webhook events.

mod chat;
pub mod conn;
mod dispatch;
pub mod event;
mod handle;
pub mod history;
mod hooks;
pub mod index;
mod keep;
mod lifecycle;
pub mod locate;
mod peer_frames;
mod peer_links;
mod peers;
pub mod rate;
mod read;
pub mod replay;
pub mod resume;
pub mod send;
pub mod slots;
mod write;

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;

use crate::cluster::link::Credentials;
use crate::mailbox::MailboxRx;
use crate::metrics::CoreMetrics;
use crate::node::Node;
use crate::registry::SystemEntry;
use crate::ws::MessageIdGen;

use conn::Conn;
use event::LocalEvent;
use index::GroupIndex;
use peers::Peers;
use slots::Slots;

pub use dispatch::Busy;
pub use lifecycle::{refuse, LINGER};
pub use peer_links::serve_link;
pub use write::let_others_in;

pub type CoreRef = Rc<RefCell<Core>>;

/// One core's state, by part: each part lives in the file that uses it
/// (`write::Writer`, `read::Reader`, `dispatch::Dispatch`, `peers::Peers`,
/// `replay::Replay`); what several files share is here.
pub struct Core {
    pub id: u8,
    pub node: Arc<Node>,
    pub conns: Slots<Conn>,
    pub index: GroupIndex,
    /// This core's copy of the registry of systems.
    pub systems: HashMap<Rc<str>, SystemEntry>,
    pub ids: MessageIdGen,
    /// Start of this core's millisecond and microsecond clocks (rate
    /// buckets, heartbeats, write waits).
    clock: Instant,
    /// Reading the connections (`read.rs`).
    reader: read::Reader,
    /// Writing to them (`write.rs`).
    writer: write::Writer,
    /// Reaching the other cores of this node (`dispatch.rs`).
    dispatch: dispatch::Dispatch,
    /// Links and peers (cluster mode only; `peers/`).
    peers: Option<Peers>,
    /// What the core keeps for resumes (`replay`).
    replay: replay::Replay,
    /// The group history streams it owns and the reads it waits on
    /// (`history/`).
    history: history::History,
    this: Weak<RefCell<Core>>,
}

impl Core {
    /// A core; inside its runtime only (it registers descriptors with it).
    pub fn new(node: Arc<Node>, id: u8, mailbox: Rc<MailboxRx>) -> std::io::Result<CoreRef> {
        let systems = node
            .systems
            .iter()
            .map(|(k, v)| (Rc::from(k.as_str()), v.clone()))
            .collect();
        let ids = MessageIdGen::new(node.message_key, id);
        let cores = node.cores();
        let peers = node.config.cluster.enabled.then(|| {
            let cfg = &node.config.cluster;
            let creds = Credentials {
                cluster: cfg.name.clone(),
                secret: cfg.secret.clone(),
                node: node.node_id,
                core: id,
            };
            Peers::new(creds, cfg.request_timeout, node.peers())
        });
        let reader = read::Reader::new(conn::codec::ws_config(&node.config.ws))?;
        let replay = replay::Replay::new(node.config.ws.resume_max_bytes / cores.max(1));
        let history = history::History::new(node.config.history.max_bytes / cores.max(1));
        Ok(Rc::new_cyclic(|this| {
            RefCell::new(Core {
                id,
                node,
                conns: Slots::default(),
                index: GroupIndex::default(),
                systems,
                ids,
                clock: Instant::now(),
                reader,
                writer: write::Writer::new(),
                dispatch: dispatch::Dispatch::new(cores, mailbox),
                peers,
                replay,
                history,
                this: this.clone(),
            })
        }))
    }

    /// The event that stops this core's tasks (`CoreMsg::Shutdown`).
    pub fn shutdown(&self) -> Rc<LocalEvent> {
        self.dispatch.shutdown.clone()
    }

    /// WebSocket sockets not dropped yet (open or lingering).
    pub fn open_sockets(&self) -> usize {
        self.reader.sockets
    }

    pub fn metrics(&self) -> &CoreMetrics {
        self.node.metrics.core(self.id as usize)
    }

    /// Milliseconds since this core started, wrapping after 49 days.
    pub(super) fn clock_ms(&self) -> u32 {
        self.clock.elapsed().as_millis() as u32
    }

    /// Microseconds since this core started, wrapping after 71 minutes,
    /// never 0 (a queue's `dirty_since`; differences taken wrapping).
    pub(super) fn clock_us(&self) -> NonZeroU32 {
        NonZeroU32::new(self.clock.elapsed().as_micros() as u32).unwrap_or(NonZeroU32::MIN)
    }

    pub fn system(&self, id: &str) -> Option<&SystemEntry> {
        self.systems.get(id)
    }
}
