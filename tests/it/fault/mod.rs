//! Faults and overload: connection floods, slow consumers, slowloris, a node killed
//! under load, corrupt frames from an authenticated peer, a core that stops draining
//! its mailbox, a peer whose core cannot take what it is sent, many publishers at once.

mod cluster_kill;
mod flood;
mod link_corrupt;
mod many_publishers;
mod peer_refused;
mod slow_consumer;
mod slowloris;
mod stalled_core;
mod stalled_group;
