//! The vocabulary of operations on connections, spoken on a core's mailbox
//! and on the links between nodes alike.
//!
//! An API call that reaches a connection on another core becomes a mailbox
//! message; one that reaches a connection on another node becomes a link
//! frame, which the receiving node turns into the same mailbox message.
//! Both carry the types below, so nothing is translated by hand between
//! them: they derive rkyv's traits and travel between nodes as they are.

use crate::ws::Push;

/// Where a connection lives on its core: the slot of the core's slab and
/// the slot's generation (a newer generation means the connection is gone).
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash,
)]
pub struct ConnAddr {
    pub slot: u32,
    pub gen: u32,
}

/// An operation on one connection, executed by the core that owns it.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ConnOp {
    /// Queue this pre-encoded WebSocket frame.
    Deliver(Push),
    /// Join `group` (online notice when new); a non-empty `user_id` or
    /// `extend` replaces the connection's value.
    Bind {
        group: String,
        user_id: String,
        extend: String,
        /// Replay the group's history to the connection first (docs/api.md
        /// §9); answered [`ConnOutcome::Bound`].
        history: Option<Ask>,
    },
    /// Leave `group` (offline notice to the rest).
    Unbind { group: String },
    /// Close with 1000.
    Close,
    /// Report the connection's details.
    Info,
}

/// What became of a [`ConnOp`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ConnOutcome {
    Done,
    /// The answer to [`ConnOp::Info`].
    Info(ClientInfo),
    /// The slot is empty or holds a newer generation.
    Offline,
    /// The connection is live but belongs to another system.
    Invalid,
    /// `bind_to_group` of a connection already in `api.max_groups_per_client`
    /// groups: nothing changed.
    TooManyGroups,
    /// A bind with history: the replay was queued; where the stream stands.
    Bound(Position),
}

/// Where a history read starts (docs/api.md §9).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The newest `n` pushes.
    Last(u32),
    /// Every push after `offset` of the numbering `epoch`.
    Since { offset: u64, epoch: String },
}

/// Where a stream stands once a read was answered: its newest offset, its
/// epoch, and whether the read got every push it asked for (the default:
/// a group without history, nothing recovered).
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Default, PartialEq, Eq,
)]
pub struct Position {
    pub recovered: bool,
    pub offset: u64,
    pub epoch: String,
}

/// A push to a history group on its way to the stream's owner, which
/// numbers it and encodes its frame: the message fields.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Unstamped {
    pub message_id: u64,
    pub send_user_id: String,
    pub code: i64,
    pub msg: String,
    /// JSON text.
    pub data: String,
}

/// What the API tells of one connection.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub user_id: String,
    pub extend: String,
    pub groups: Vec<String>,
    pub connect_time: u64,
    /// Dropped without a goodbye and kept for a resume (docs/api.md §8).
    pub detached: bool,
}

/// A group and its member count.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupCount {
    pub group: String,
    pub count: u64,
}

/// A connection that reads a stream: where the owner sends the replay.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    pub node: u16,
    pub core: u8,
    pub addr: ConnAddr,
}

/// A page of a stream's history (`/api/get_group_history`); the default is
/// that of a stream with no push yet.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Default, PartialEq, Eq,
)]
pub struct Page {
    pub epoch: String,
    /// The stream's newest offset.
    pub offset: u64,
    pub messages: Vec<PageEntry>,
}

/// One push of a [`Page`]: the fields are read out of `frame` where the
/// answer is written.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PageEntry {
    pub offset: u64,
    /// Unix milliseconds when the owner numbered it.
    pub at_ms: u64,
    /// The plain push frame.
    pub frame: bytes::Bytes,
}

/// A stream moving to its next owner (docs/api.md §9): its numbering and
/// what it keeps; the receiver applies its own rule's size and ttl.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HandedStream {
    pub epoch: String,
    pub top: u64,
    /// Unix milliseconds of the newest push (or of the stream's making).
    pub last_ms: u64,
    pub kept: Vec<HandedPush>,
}

/// One kept push of a [`HandedStream`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HandedPush {
    pub offset: u64,
    pub at_ms: u64,
    pub push: Push,
}
