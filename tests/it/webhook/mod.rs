//! Webhooks (docs/api.md §2.2) on one node and in a cluster.

mod cluster;
mod fairness;
mod receiver_example;
mod standalone;
