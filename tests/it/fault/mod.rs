//! Faults and overload: connection floods, slow consumers, slowloris, a node killed
//! under load, corrupt frames from an authenticated peer, a core that stops draining
//! its mailbox, a peer whose core cannot take what it is sent, many publishers at once,
//! a cascade of cuts in a room of ten thousand, a core under a steady stream of mail.

mod cascade;
mod cluster_kill;
mod fair_cores;
mod flood;
mod link_corrupt;
mod many_publishers;
mod peer_refused;
mod slow_consumer;
mod slowloris;
mod stalled_core;
mod stalled_group;
