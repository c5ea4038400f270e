//! Group history in the JavaScript client (`/shardcast.js`, docs/js-client.md "Group
//! history", docs/api.md §9), scripted by `tests/console/history.mjs` on Node.js with the
//! `ws` package (no browser): the client, connected through a `CutProxy`, keeps each
//! history group's position and recovers by itself — after a resume that lost pushes
//! (`ws.resume_max_bytes` smaller than what was sent during the cut), after a new
//! connection that the backend (the test) binds again once pushes were missed, and after
//! a node restart (a new epoch) — and its app gets every push once, in offset order; a
//! recover the node refuses is tried again twice, then reported.
//!
//! Needs `node` (18 or later) and `npm ci --prefix tests/console` (scripts/test.sh does
//! both).

use super::client::{network, run_script};
use crate::support::{cut_proxy::CutProxy, node::Node};
use std::path::Path;

#[test]
fn the_js_client_recovers_the_pushes_of_its_history_groups() {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/node_modules/ws");
    assert!(
        ws.is_dir(),
        "{} is missing: run npm ci --prefix tests/console (scripts/test.sh does)",
        ws.display()
    );
    // One core, so that one small resume log holds the whole node's frames.
    let mut node = Node::start(
        "[server]\nworkers = 1\n[ws]\nresume_window = \"30s\"\nresume_max_bytes = 8000\n\
         [history]\ngroups = [{ prefix = \"room-\", size = 50, ttl = \"10m\" }]\n",
    );
    let proxy = CutProxy::start(node.addr());
    let args = [
        format!("http://{}", node.addr()),
        format!("http://{}", proxy.addr()),
    ];
    let steps = [
        "client a: resumed, not recovered; recovered room-a by itself",
        "client b: a new connection bound again; recovered the gap by itself",
        "client b: a recover of a group it is not in refused 3 times",
        "client b: new epoch after the restart, recovered: false",
        "PASS",
    ];
    run_script("history.mjs", &args, &steps, network(&proxy, &mut node));
}
