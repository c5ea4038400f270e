//! The HTTP server and the process: connection handling on the shared port
//! (docs/api.md §1, §5) and the lifecycle — restart, config, signals (§6).

mod dashboard;
mod http_conn;
mod http_limits;
mod lifecycle;
mod write_wait;
