//! The tasks that keep this core's links up: one dialling task per peer
//! (reconnecting with backoff while the peer is in etcd), and one task per
//! link a peer dialled to us on the cluster port, admitted only when
//! membership lists the node id it claims at the address it comes from.
//!
//! A link whose frame fails to open (altered, injected, replayed) is closed
//! and counted here; the dialling side's backoff then brings it back, like
//! any broken link.
//!
//! A node that has just joined, or registered again after losing its lease,
//! may dial before this node's etcd watch has brought its record here. The
//! acceptor therefore waits (a bounded time: half the handshake's limit) for
//! its view to list a claimed id before refusing it, instead of refusing at
//! once and leaving the dialler to a backoff that may have grown to seconds.
//! Membership is still what admits a node: the wait only lets the watch
//! catch up; an id it never lists is refused when the wait ends.
//!
//! When a peer joins (again), `Core::set_peers` wakes its dialling task,
//! which dials at once with its backoff reset.

use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Core, CoreRef};
use crate::cluster::link::{self, LinkError, Linked};
use crate::cluster::PeerTable;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often an acceptor waiting for its view to list a claimed node looks.
const ADMIT_STEP: Duration = Duration::from_millis(10);

/// Keeps this core's link to `node` up while the node is a peer. A message
/// on `woken` (the peer joined again) ends a backoff at once and resets it.
pub(super) async fn maintain(
    this: Weak<std::cell::RefCell<Core>>,
    node: u16,
    mut woken: mpsc::Receiver<()>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        // Wake-ups not taken yet are answered by this attempt.
        while woken.try_recv().is_ok() {}
        let Some(core) = this.upgrade() else { return };
        let target = {
            let mut c = core.borrow_mut();
            let Some(p) = c.peers.as_mut() else { return };
            match p.view.table.get(&node) {
                Some(peer) => (peer.addr.clone(), p.creds.clone(), p.request_timeout),
                None => {
                    p.view.maintained.remove(&node);
                    return;
                }
            }
        };
        let (addr, creds, limit) = target;
        match link::dial(&addr, &creds, node, limit).await {
            Ok((stream, linked)) => {
                backoff = BACKOFF_MIN;
                tracing::info!(peer = node, %addr, "link up");
                mark_broken(&core, node, false);
                if let Some(why) = run(&core, Rc::new(stream), linked, true).await {
                    tracing::info!(peer = node, reason = %why, "link down");
                }
            }
            Err(e) if backoff >= BACKOFF_MAX => {
                tracing::warn!(peer = node, %addr, error = %e, "link dial keeps failing")
            }
            Err(e) => tracing::debug!(peer = node, %addr, error = %e, "link dial failed"),
        }
        mark_broken(&core, node, true);
        core.borrow().metrics().link_reconnect();
        // A peer that has just joined may not be in the acceptor's view yet
        // (it registered a moment ago): keep trying at the shortest step
        // while it is just joined, so the link is up as soon as the view is.
        let just_joined = core
            .borrow()
            .peers
            .as_ref()
            .is_some_and(|p| p.just_joined(node));
        drop(core);
        if just_joined {
            backoff = BACKOFF_MIN;
        }
        backoff = match monoio::time::timeout(backoff, woken.recv()).await {
            Ok(Some(())) => BACKOFF_MIN,
            // The core is gone.
            Ok(None) => return,
            Err(_) if just_joined => BACKOFF_MIN,
            Err(_) => (backoff * 2).min(BACKOFF_MAX),
        };
    }
}

/// Records whether this core's link to `node` has broken (or failed to
/// come up) since it was last up: requests to such a peer fail at once
/// instead of waiting for a link that may never come (unless it has only
/// just joined).
fn mark_broken(core: &CoreRef, node: u16, broken: bool) {
    if let Some(p) = core.borrow_mut().peers.as_mut() {
        p.mark_broken(node, broken);
    }
}

/// Authenticates a connection accepted on the cluster port and runs it as
/// a link.
pub async fn serve_link(core: CoreRef, stream: TcpStream, addr: SocketAddr) {
    let (creds, limit) = match core.borrow().peers.as_ref() {
        Some(p) => (p.creds.clone(), p.request_timeout),
        None => return,
    };
    let admitted = |node| admit(&core, node, addr.ip(), limit / 2);
    match link::accept(&stream, &creds, limit, admitted).await {
        Ok(linked) => {
            let node = linked.node;
            if let Some(why) = run(&core, Rc::new(stream), linked, false).await {
                tracing::debug!(peer = node, %addr, reason = %why, "inbound link closed");
            }
        }
        Err(e) => tracing::warn!(%addr, error = %crate::logtext::esc(&e), "refused a cluster link"),
    }
}

/// Whether a Hello from `from` may claim to be `node`: membership (this
/// node's latest view) must list the node, and at that IP address when its
/// advertised address is an IP literal (a host name is not resolved here;
/// the proof, which names both nodes, still has to hold). A view that does
/// not admit it yet is looked at again until `wait` has passed: the node
/// may have registered a moment ago, and the watch brings it within
/// milliseconds.
async fn admit(
    core: &CoreRef,
    node: u16,
    from: IpAddr,
    wait: Duration,
) -> Result<(), &'static str> {
    let until = Instant::now() + wait;
    loop {
        let peers = core.borrow().node.peers();
        let verdict = admitted(&peers, node, from);
        if verdict.is_ok() || Instant::now() >= until {
            return verdict;
        }
        monoio::time::sleep(ADMIT_STEP).await;
    }
}

/// The admission rule of [`admit`] against one view.
fn admitted(peers: &PeerTable, node: u16, from: IpAddr) -> Result<(), &'static str> {
    let Some(peer) = peers.get(&node) else {
        return Err("hello claims a node id that membership does not list");
    };
    match peer.addr.parse::<SocketAddr>() {
        Ok(listed) if listed.ip().to_canonical() != from.to_canonical() => {
            Err("hello claims a node id that membership lists at another address")
        }
        _ => Ok(()),
    }
}

/// Runs an established link until it ends: every frame goes to
/// `on_link_frame`, the core flushes after each read. A frame that fails to
/// open or to validate is logged and counted here; any other end is
/// returned.
async fn run(
    core: &CoreRef,
    stream: Rc<TcpStream>,
    linked: Linked,
    outbound: bool,
) -> Option<LinkError> {
    let Linked {
        node,
        rest,
        sealer,
        opener,
    } = linked;
    let key = core
        .borrow_mut()
        .add_link(node, stream.clone(), outbound, sealer)?;
    let why = link::read_frames(
        stream,
        rest,
        opener,
        |frame, bytes| {
            core.borrow().metrics().link_in(bytes);
            Core::on_link_frame(core, key, frame);
        },
        || core.borrow_mut().flush(),
    )
    .await;
    core.borrow_mut().remove_link(key);
    match why {
        LinkError::Seal(e) => {
            core.borrow().metrics().link_open_failure();
            tracing::warn!(peer = node, error = %e, "dropped a link: bad frame");
            None
        }
        LinkError::Frame(e) => {
            let e = crate::logtext::esc(&e);
            tracing::warn!(peer = node, error = %e, "dropped a link: bad frame");
            None
        }
        why => Some(why),
    }
}
