//! shardcast: a thread-per-core WebSocket push service.
//!
//! The library holds everything the binary runs, so that tests, benches and
//! fuzz targets reach the codecs directly. `main.rs` only parses the command
//! line, sets up logging and calls [`server::run`].
//!
//! Modules are layered; each imports only from lower layers, those listed
//! before its own (`tests/it/layering.rs` checks it; docs/architecture.md
//! draws the data path through them):
//!
//! 1. Foundations, importing nothing of the crate:
//!    [`config`] (the TOML model, env overlay, validation), [`clock`]
//!    (unix time),
//!    [`client_id`] (the AES clientId codec), [`socket`] (readiness I/O and
//!    `sendmsg`), [`registry`] (standalone systems file, written by a thread of its own), [`json`] (JSON text
//!    of known length), [`op`] (operations on connections, shared by
//!    mailboxes and links), [`logtext`] (outside values escaped for log
//!    lines).
//! 2. Wire formats, pure functions over bytes: [`http`] (HTTP/1.1 codec),
//!    [`ws`] (WebSocket frames and the messages clients receive),
//!    [`history`] (group history as data: owners, streams and their
//!    bounds), [`api`] (routes, bodies, errors, envelopes, tokens).
//! 3. Node-wide services: [`metrics`] (per-core counters), [`webhook`]
//!    (event delivery thread), [`cluster`] (inter-node frames, link
//!    transport, etcd membership).
//! 4. [`mailbox`]: what cores tell each other.
//! 5. [`node`]: what every core shares (read-only after start, or atomic).
//! 6. [`core`]: one core's connections, index, links and sends.
//! 7. [`console`] and [`service`]: what answers on the http port.
//! 8. [`server`]: starting the node and its core threads.
//!
//! Without the default feature `node`, the library is layers 1–2 and the
//! inter-node frame codec: the codecs, with no runtime (the fuzz targets).

pub mod api;
pub mod client_id;
pub mod clock;
pub mod cluster;
pub mod config;
#[cfg(feature = "node")]
pub mod console;
#[cfg(feature = "node")]
pub mod core;
pub mod history;
pub mod http;
pub mod json;
pub mod logtext;
#[cfg(feature = "node")]
pub mod mailbox;
#[cfg(feature = "node")]
pub mod metrics;
#[cfg(feature = "node")]
pub mod node;
pub mod op;
pub mod registry;
#[cfg(feature = "node")]
pub mod server;
#[cfg(feature = "node")]
pub mod service;
#[cfg(feature = "node")]
pub mod socket;
#[cfg(feature = "node")]
pub mod webhook;
pub mod ws;
