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
//! - `route`: where a stream lives, and the sends and pages of an API call
//!   that reach it.

mod owner;
mod reader;
pub mod route;

use crate::history::streams::Streams;

pub use reader::Why;

/// A core's share of group history.
pub struct History {
    /// The streams this core owns.
    pub streams: Streams,
    /// Connections of this core waiting for a replay.
    recoveries: reader::Recoveries,
}

impl History {
    pub fn new(limit: usize) -> History {
        History {
            streams: Streams::new(limit),
            recoveries: reader::Recoveries::default(),
        }
    }
}
