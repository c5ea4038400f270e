//! Several nodes and a private etcd (docs/api.md §4 "Cluster rules", docs/cluster.md).

mod chat;
mod demo_script;
mod etcd_outage;
mod harness;
mod history;
mod leave;
mod link_seal;
mod membership;
mod nginx;
mod registry;
mod resume;
mod routing;
mod security;
