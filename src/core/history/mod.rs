//! Group history on a core (docs/api.md §9), in its two roles:
//!
//! - `owner`: the core that owns streams numbers every push of each (it
//!   reaches the owner through `route`, one mailbox or link hop), keeps it
//!   (`history::streams`), fans it out as any group send, and answers reads
//!   and pages;
//! - `reader`: the core of a connection that reads a stream (a bind with
//!   `history`/`since`, a client's `recover`) asks the owner, skips the
//!   stream's live pushes to that connection until the replay arrives, then
//!   queues the replay. The replay leaves the owner behind every push it
//!   numbered before the read and ahead of every push after, on the same
//!   mailbox or link, so the skipped pushes are exactly those the replay
//!   holds: none doubled, none lost.
//! - `moves`: what an owner does with a request for a stream it does not
//!   hold: follow a stream it gave away, forward it to the owner its view
//!   names, or claim the stream from its previous owner (a node that
//!   joined); and a draining node giving its streams to their next owners.
//! - `route`: where a stream lives, and the sends and pages of an API call
//!   that reach it.

mod moves;
mod owner;
mod reader;
pub mod route;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::api::error::ApiError;
use crate::history::streams::Streams;
use crate::mailbox::Reply;
use crate::op::{Ask, Page, Reader, Unstamped};

pub use moves::hand_over_all;
pub use reader::Why;

/// A stream: (system, group).
pub type Key = (Arc<str>, Arc<str>);

/// A request for a stream, waiting for the core to hold it.
pub enum Pending {
    Stamp {
        message: Unstamped,
        reply: Reply<Result<bool, ApiError>>,
    },
    Read {
        ask: Ask,
        reader: Reader,
    },
    Page {
        since: Option<(u64, String)>,
        limit: u32,
        reply: Reply<Page>,
    },
}

/// A core's share of group history.
pub struct History {
    /// The streams this core owns.
    pub streams: Streams,
    /// Connections of this core waiting for a replay.
    recoveries: reader::Recoveries,
    /// Streams this core asked their previous owner for, with the requests
    /// that wait for them, in order.
    claims: HashMap<Key, Vec<Pending>>,
    /// Streams this core gave away, and to which node: requests that still
    /// come here follow them.
    moved: HashMap<Key, (u16, Instant)>,
    /// When the streams were last swept (`sweep_history`).
    swept: Instant,
}

impl History {
    pub fn new(limit: usize) -> History {
        History {
            streams: Streams::new(limit),
            recoveries: reader::Recoveries::default(),
            claims: HashMap::new(),
            moved: HashMap::new(),
            swept: Instant::now(),
        }
    }
}
