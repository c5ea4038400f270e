//! The WebSocket endpoint (docs/api.md §2): sessions, notices, client messages (§2.1),
//! permessage-deflate (§10), and many or slow connections on one node.

mod client_messages;
mod deflate;
mod deflate_push;
mod history;
mod load;
mod notices;
mod resume;
mod resume_truth;
mod session;
