//! permessage-deflate (RFC 7692; docs/api.md §10): negotiation, the frames
//! the node compresses, and compressed client messages.
//!
//! Why it is built this way:
//! - **No context takeover, either way.** A push goes to many connections
//!   as the same bytes; compressing it once is only possible if no
//!   recipient's compression state has to be continued. Inbound, the
//!   server answers `client_no_context_takeover`, so every client message
//!   is a stream of its own and one inflater per core reads them all. A
//!   connection with deflate therefore costs what one without costs: no
//!   compressor (a few hundred KiB in zlib) and no inflater (about 46 KiB)
//!   per connection.
//! - **Per core, not per call.** Compressor and inflater are reset per
//!   message and kept per core (thread-locals: one thread per core).
//! - **zlib-rs** (pure Rust, through flate2): it writes raw deflate with a
//!   window of 9–15 bits, which `server_max_window_bits` needs (libdeflate
//!   and miniz_oxide cannot), and it is the fastest of the pure-Rust ones.
//! - **Browsers that ignore `client_no_context_takeover`** (Safari
//!   15.0–15.3, iOS 15.0–15.3): their second compressed message refers to
//!   the first, which a fresh inflater never saw. Keeping a 32 KiB window
//!   for just those connections would make every connection's read path
//!   carry per-connection inflate state that only they use; so they are
//!   not offered deflate at all (as uWebSockets does), and work as they
//!   did before, uncompressed ([`offer::ignores_client_no_context_takeover`]).
//!   Any other client that did the same would get 1007 at its second
//!   message.
//!
//! The files: `offer` (the handshake), `compress` (outbound frames),
//! `inflate` (one message, bounded), `inbound` (compressed messages taken
//! out of a connection's input before tungstenite reads it).

pub mod compress;
pub mod inbound;
pub mod inflate;
pub mod offer;

pub use compress::{compressed_frame, compressed_text};
pub use inbound::{Inbound, InboundError, Piece};
pub use offer::{negotiate, Agreement, Deflate};

/// What a sync flush ends with, and RFC 7692 §7.2.1 removes from a
/// message's compressed payload (§7.2.2 puts it back before inflating).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
