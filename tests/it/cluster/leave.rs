//! Leaving the cluster (README "Operations", docs/cluster.md "Membership"): every stop
//! by SIGTERM or SIGINT revokes the node's lease and logs "left the cluster" before the
//! process exits, however short the drain — a node without WebSocket connections stops
//! its cores at once, and used to exit before etcd had answered the revoke, leaving its
//! record until `lease_ttl` ran out. So a node restarted at once with its fixed
//! `cluster.node_id` (which resume routing through nginx needs) comes up every time,
//! instead of failing with "node id N is in use".

use crate::support::cluster::{ClusterNode, Etcd};
use std::time::{Duration, Instant};

/// The node id of the test node.
const NODE_ID: u16 = 7;

/// Ten stops in a row, SIGTERM and SIGINT in turn, each followed at once by a start
/// with the same `node_id`. Right after each exit, the node's record is gone from etcd
/// and its log says it left.
#[test]
fn a_stopped_node_leaves_at_once_and_restarts_with_its_node_id() {
    let etcd = Etcd::start();
    let extra = format!("[server]\nshutdown_timeout = \"2s\"\n[cluster]\nnode_id = {NODE_ID}\n");
    let mut node = ClusterNode::start(&etcd, &extra);
    let key = format!("{}nodes/{NODE_ID}", etcd.cluster_prefix());
    let record = |etcd: &Etcd| etcd.keys_under(&key).into_iter().any(|(k, _)| k == key);
    for run in 1..=10 {
        assert!(
            record(&etcd),
            "run {run}: no {key} in etcd:\n{}",
            etcd.dump()
        );
        let before = node.log().len();
        let sig = if run % 2 == 1 {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        let signalled = Instant::now();
        node.signal(sig);
        let status = node.wait_exit(Duration::from_secs(10));
        let took = signalled.elapsed();
        assert!(status.success(), "run {run}: exit status {status}");
        // The lease would keep the record for `lease_ttl` (2 s); revoked, it is gone
        // by the time the process has exited.
        assert!(
            !record(&etcd),
            "run {run}: {key} still in etcd right after the exit ({took:?} after signal \
             {sig}):\n{}",
            etcd.dump()
        );
        let log = node.log();
        let this_run = log.get(before..).unwrap_or("");
        assert!(
            this_run.contains("left the cluster"),
            "run {run}: no \"left the cluster\" after signal {sig}:\n{this_run}"
        );
        if let Err(e) = node.restart_on_same_port() {
            panic!("run {run}: the restart with node_id {NODE_ID} failed: {e}");
        }
    }
}
