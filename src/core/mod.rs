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
//!   they send us, and batched writing to them;
//! - `replay`, `keep`, `resume`: the per-core replay log and each
//!   connection's place in it, what the core keeps in it as it works, and
//!   connections detached by a drop and attached again;
//! - `handle`: the mailbox messages, executed on this core's connections;
//! - `dispatch`: reaching the other cores of this node;
//! - `locate`, `send`: where a clientId lives, and sends and operations
//!   that reach connections wherever they are (this core, another core,
//!   another node);
//! - `peers`, `peer_links`, `peer_frames`: this core's links to other
//!   nodes, the tasks that keep them up, and the frames that arrive on them;
//! - `chat`, `hooks`: client messages and webhook events.

mod chat;
pub mod conn;
mod dispatch;
pub mod event;
mod handle;
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
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;

use crate::cluster::link::Credentials;
use crate::mailbox::Inbox;
use crate::metrics::CoreMetrics;
use crate::node::Node;
use crate::op::ConnAddr;
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

/// Size of the per-core buffer every WebSocket read lands in.
const SCRATCH_BYTES: usize = 64 * 1024;

pub struct Core {
    pub id: u8,
    pub node: Arc<Node>,
    pub conns: Slots<Conn>,
    pub index: GroupIndex,
    /// This core's copy of the registry of systems.
    pub systems: HashMap<Rc<str>, SystemEntry>,
    /// The user id of connections without one, shared by all of them.
    no_user: Rc<str>,
    pub ids: MessageIdGen,
    pub shutdown: Rc<LocalEvent>,
    /// WebSocket sockets not dropped yet: open connections and closed ones
    /// still lingering.
    pub ws_sockets: usize,
    /// The epoll instance of this core's connections (`conn::reader`).
    pub readiness: Rc<conn::reader::Readiness>,
    /// Links and peers (cluster mode only).
    peers: Option<Peers>,
    /// Connections with queued frames, oldest first, written by `flush` in
    /// slices (`write.rs`).
    dirty: VecDeque<ConnAddr>,
    /// A flusher task is writing the rest of `dirty`, a slice at a time.
    flushing: bool,
    /// Connections to close once the fan-out under way is over (`write.rs`).
    doomed: Vec<(ConnAddr, crate::ws::CloseReason)>,
    /// Messages for each other core, sent at the next flush (`dispatch.rs`).
    outbox: Vec<Vec<crate::mailbox::CoreMsg>>,
    /// A socket that is always writable: waiting on it lets the runtime
    /// reap I/O completions between two slices (`write.rs`).
    nudge: Option<write::Nudge>,
    scratch: Vec<u8>,
    /// The WebSocket codec lent to each read (`conn::codec`), and the
    /// settings of a new one.
    codec: conn::codec::Codec,
    ws_config: tungstenite::protocol::WebSocketConfig,
    /// Client messages read from one connection, handled after the read.
    inbox: Vec<tungstenite::Utf8Bytes>,
    /// Start of this core's millisecond and microsecond clocks (rate
    /// buckets, write waits).
    clock: Instant,
    ws_out: Vec<u8>,
    /// What the core keeps for resumes (`replay`).
    replay: replay::Replay,
    /// This core's mailbox, drained by its mailbox task and, before each API
    /// request, by `take_mail`.
    mailbox: Rc<Inbox>,
    /// Mail taken out of the mailbox and not handled yet, oldest first: the
    /// rest of a `CoreMsg::Batch` (`take_some_mail`, `dispatch.rs`).
    held_mail: VecDeque<crate::mailbox::CoreMsg>,
    this: Weak<RefCell<Core>>,
}

impl Core {
    /// A core; inside its runtime only (it registers descriptors with it).
    pub fn new(node: Arc<Node>, id: u8, mailbox: Rc<Inbox>) -> std::io::Result<CoreRef> {
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
        let ws_config = conn::codec::ws_config(&node.config.ws);
        let readiness = Rc::new(conn::reader::Readiness::new()?);
        let replay = replay::Replay::new(node.config.ws.resume_max_bytes / cores.max(1));
        Ok(Rc::new_cyclic(|this| {
            RefCell::new(Core {
                id,
                node,
                conns: Slots::default(),
                index: GroupIndex::default(),
                systems,
                no_user: Rc::from(""),
                ids,
                shutdown: Rc::new(LocalEvent::default()),
                ws_sockets: 0,
                readiness,
                peers,
                dirty: VecDeque::new(),
                flushing: false,
                doomed: Vec::new(),
                outbox: (0..cores).map(|_| Vec::new()).collect(),
                nudge: monoio::net::UnixStream::pair().ok().map(Rc::new),
                scratch: vec![0; SCRATCH_BYTES],
                codec: conn::codec::Codec::new(ws_config),
                ws_config,
                inbox: Vec::new(),
                clock: Instant::now(),
                ws_out: Vec::new(),
                replay,
                mailbox,
                held_mail: VecDeque::new(),
                this: this.clone(),
            })
        }))
    }

    /// The socket that lets the core's other tasks in (`let_others_in`).
    pub fn nudge(&self) -> Option<write::Nudge> {
        self.nudge.clone()
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
