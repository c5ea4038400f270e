//! Cluster mode, as a transport: the inter-node frame codec, the link
//! handshake and socket handling, and etcd membership (docs/cluster.md).
//!
//! This module knows nothing of cores or connections. Decoded frames are
//! handed to a closure of whoever runs the link (`core::peers`), and
//! membership changes to a closure given at `membership::join`; the per-core
//! state of peers, links and pending requests lives in `core`.

pub mod frame;
pub mod handshake;
#[cfg(feature = "node")]
pub mod link;
#[cfg(feature = "node")]
pub mod membership;
pub mod seal;
#[cfg(feature = "node")]
mod view;

#[cfg(feature = "node")]
pub use view::{ClusterView, PeerTable};
