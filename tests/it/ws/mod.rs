//! The WebSocket endpoint (docs/api.md §2): sessions, notices, client messages (§2.1),
//! and many or slow connections on one node.

mod client_messages;
mod load;
mod notices;
mod resume;
mod resume_truth;
mod session;
