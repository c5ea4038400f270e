//! Group history (docs/api.md §9): the last pushes of a group kept by the
//! one core that stamps them, so that a late joiner, a long gap or a node
//! restart costs a read, not a loss.
//!
//! A stream — (system, group) under a `history.groups` rule — has one owner
//! core in the cluster (`owner`: rendezvous hashing over the live nodes,
//! then a hash over that node's cores). Every send to the group goes
//! through it: it numbers the push (offset, from 1; the epoch names the
//! numbering, new whenever the history was lost), keeps the shared frame
//! (`stream`), and fans it out. Since one core sends every push of a stream,
//! and mailboxes and links are first in, first out, every member sees the
//! stream in offset order; an answer to a read travels the same path as the
//! pushes, so the reader's core knows which pushes the answer holds
//! (those before it) and which it does not (those after it). `streams`
//! holds a core's streams under its share of `history.max_bytes`.

pub mod owner;
pub mod stream;
pub mod streams;
