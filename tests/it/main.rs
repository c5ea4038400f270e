//! The black-box tests of shardcast, built as one test binary: `cargo test --test it`
//! (a filter runs a part: `cargo test --test it cluster::`, `… fault::slow_consumer`).
//!
//! Every test starts the real `shardcast` binary (`support::node`), and for the cluster
//! tests a private etcd (`support::cluster`); clients are real HTTP and WebSocket
//! clients. Tests run in parallel: each takes free ports, its own temporary directories
//! and (cluster tests) its own cluster name, and every process it starts is stopped when
//! the test ends, passed or failed.
//!
//! - `api`: the HTTP push API (docs/api.md §4, §5) on one node.
//! - `ws`: the WebSocket endpoint, notices and client messages (docs/api.md §2, §2.1).
//! - `server`: HTTP connection handling and the process lifecycle (docs/api.md §1, §6).
//! - `cluster`: several nodes and an etcd (docs/cluster.md).
//! - `fault`: faults and overload: floods, slow consumers, slowloris, dead and corrupt
//!   peers.
//! - `webhook`: webhooks (docs/api.md §2.2).
//! - `console_page`: the console (docs/api.md §2.3), over HTTP and in a real browser
//!   (driven by `tests/console/e2e.mjs`), and the JavaScript client of `/shardcast.js`
//!   (`client.mjs`, `resume.mjs`).
//! - `layering`: the source itself: modules import only from lower layers
//!   (docs/architecture.md).

mod api;
mod cluster;
mod console_page;
mod fault;
mod layering;
mod server;
mod support;
mod webhook;
mod ws;
