//! shardcast: a thread-per-core WebSocket push service.
//!
//! The library holds everything the binary runs, so that tests, benches and
//! fuzz targets reach the codecs directly. `main.rs` only parses the command
//! line, sets up logging and calls [`server::run`].

pub mod api;
pub mod client_id;
pub mod cluster;
pub mod config;
pub mod console;
pub mod core;
pub mod http;
pub mod metrics;
pub mod node;
pub mod push;
pub mod registry;
pub mod server;
pub mod socket;
pub mod webhook;
pub mod ws;
