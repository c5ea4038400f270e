//! The WebSocket wire, as bytes: RFC 6455 frames, the JSON messages the
//! node sends (docs/api.md §2), message ids, close reasons and
//! permessage-deflate (§10). Pure functions and plain types; the
//! connections themselves live in `core`.

pub mod close;
pub mod deflate;
pub mod frame;
pub mod message;
pub mod message_id;
pub mod push;

pub use close::CloseReason;
pub use message_id::{Last, MessageId, MessageIdGen};
pub use push::{Encoding, Push};
