//! HTTP/1.1 codec for the push API and the WebSocket handshake.
//!
//! Why a hand-rolled codec instead of a server framework: shardcast runs a
//! thread-per-core runtime and needs only a sliver of HTTP (small JSON pushes,
//! health checks, and the upgrade request that starts every WebSocket). Pure
//! functions over byte buffers keep that sliver independent of any I/O runtime,
//! make every edge case (split reads, pipelining, oversized input) testable
//! without sockets, and let the connection loop decide what to do with errors.
//!
//! * [`request`] decodes one request from the front of a read buffer, answering
//!   "incomplete" until the whole request has arrived.
//! * [`response`] appends encoded responses to a write buffer.

pub mod request;
pub mod response;

pub use request::{
    parse_request, query_param, HttpError, Limits, Method, Parsed, Request, WsUpgrade,
};
pub use response::{reason, write_head, write_json, write_response, write_switching_protocols};
