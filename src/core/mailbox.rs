//! What cores say to each other.
//!
//! Each core drains one MPSC mailbox (flume) in batches. A message carries
//! everything the receiving core needs — the pre-encoded frame as `Bytes`,
//! names as `Arc<str>` — so the receiver allocates nothing per recipient.
//! Requests that need an answer carry a one-shot `Reply`.

use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::PeerTable;
use crate::registry::SystemEntry;

/// A one-shot answer channel (a bounded flume channel of one).
pub type Reply<T> = flume::Sender<T>;

pub fn reply_channel<T>() -> (Reply<T>, flume::Receiver<T>) {
    flume::bounded(1)
}

/// What the API needs to know of one connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub user_id: String,
    pub extend: String,
    pub groups: Vec<String>,
    pub connect_time: u64,
}

/// Why a per-connection operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    /// The slot is empty or holds a newer generation.
    Offline,
    /// The connection is live but belongs to another system.
    Invalid,
}

/// An operation on one connection, executed by its owning core.
pub enum ConnOp {
    Deliver(Bytes),
    Bind {
        group: Arc<str>,
        user_id: String,
        extend: String,
    },
    Unbind(Arc<str>),
    Close,
    Info,
}

pub type ConnResult = Result<Option<ClientInfo>, ConnError>;

pub enum CoreMsg {
    Conn {
        slot: u32,
        generation: u32,
        system: Arc<str>,
        op: ConnOp,
        reply: Option<Reply<ConnResult>>,
    },
    /// Deliver one frame to several connections of this core; replies with
    /// how many were online.
    Many {
        system: Arc<str>,
        targets: Vec<(u32, u32)>,
        frame: Bytes,
        reply: Reply<usize>,
    },
    Group {
        system: Arc<str>,
        group: Arc<str>,
        frame: Bytes,
    },
    User {
        system: Arc<str>,
        user: Arc<str>,
        frame: Bytes,
        reply: Reply<usize>,
    },
    System {
        system: Arc<str>,
        frame: Bytes,
    },
    OnlineList {
        system: Arc<str>,
        group: Arc<str>,
        with_info: bool,
        reply: Reply<Vec<ClientInfo>>,
    },
    GroupList {
        system: Arc<str>,
        reply: Reply<Vec<(String, usize)>>,
    },
    SystemAdded {
        id: Arc<str>,
        entry: SystemEntry,
        reply: Option<Reply<()>>,
    },
    /// The membership thread's new view of the other nodes.
    Peers(Arc<PeerTable>),
    /// This node lost its identity in etcd: close every connection.
    NodeLost,
    Shutdown,
}
