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
