//! The push API's contract as data (docs/api.md §4–§5): the route table,
//! request bodies and their limits, the error catalogue (zh/en), the answer
//! envelope, connect tokens, client messages and secret comparison.
//!
//! Everything here is a pure function over bytes and plain values — no
//! sockets, no cores — so that it is tested and fuzzed on its own. What a
//! route *does* lives in `service`, which sends through `core`.

pub mod auth;
pub mod body;
pub mod client_message;
pub mod connect_token;
pub mod envelope;
pub mod error;
pub mod resume_token;
pub mod route;
