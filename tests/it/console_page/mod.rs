//! The console (docs/api.md §2.3): its HTTP routes, and the page in a real browser.
//! (The browser script and its npm lock file live in `tests/console/`.)

mod browser;
mod client;
mod client_history;
mod http;
mod node_client;
