//! The tasks that keep this core's links up: one dialling task per peer
//! (reconnecting with backoff while the peer is in etcd), and one task per
//! link a peer dialled to us on the cluster port.

use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;

use super::peers::LinkKey;
use super::{Core, CoreRef};
use crate::cluster::link::{self, LinkError};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps this core's link to `node` up while the node is a peer.
pub(super) async fn maintain(this: Weak<std::cell::RefCell<Core>>, node: u16) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(core) = this.upgrade() else { return };
        let target = {
            let mut c = core.borrow_mut();
            let Some(p) = c.peers.as_mut() else { return };
            match p.table.get(&node) {
                Some(peer) => (peer.addr.clone(), p.creds.clone(), p.request_timeout),
                None => {
                    p.maintained.remove(&node);
                    return;
                }
            }
        };
        let (addr, creds, limit) = target;
        match link::dial(&addr, &creds, node, limit).await {
            Ok((stream, rest)) => {
                backoff = BACKOFF_MIN;
                let stream = Rc::new(stream);
                let key = core.borrow_mut().add_link(node, stream.clone(), true);
                if let Some(key) = key {
                    tracing::info!(peer = node, %addr, "link up");
                    mark_broken(&core, node, false);
                    let why = run(&core, stream, key, rest).await;
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
        drop(core);
        monoio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Records whether this core's link to `node` has broken (or failed to
/// come up) since it was last up: requests to such a peer fail at once
/// instead of waiting for a link that may never come.
fn mark_broken(core: &CoreRef, node: u16, broken: bool) {
    if let Some(p) = core.borrow_mut().peers.as_mut() {
        if broken {
            p.broken.insert(node);
        } else {
            p.broken.remove(&node);
        }
    }
}

/// Authenticates a connection accepted on the cluster port and runs it as
/// a link.
pub async fn serve_link(core: CoreRef, stream: TcpStream, addr: std::net::SocketAddr) {
    let (creds, limit) = match core.borrow().peers.as_ref() {
        Some(p) => (p.creds.clone(), p.request_timeout),
        None => return,
    };
    match link::accept(&stream, &creds, limit).await {
        Ok((node, rest)) => {
            let stream = Rc::new(stream);
            let key = core.borrow_mut().add_link(node, stream.clone(), false);
            if let Some(key) = key {
                match run(&core, stream, key, rest).await {
                    LinkError::Frame(e) => {
                        tracing::warn!(peer = node, %addr, error = %e, "dropped a link: bad frame")
                    }
                    why => tracing::debug!(peer = node, reason = %why, "inbound link closed"),
                }
            }
        }
        Err(e) => tracing::warn!(%addr, error = %e, "refused a cluster link"),
    }
}

/// Runs an established link until it ends: every frame goes to
/// `on_link_frame`, the core flushes after each read.
async fn run(core: &CoreRef, stream: Rc<TcpStream>, key: LinkKey, rest: BytesMut) -> LinkError {
    let why = link::read_frames(
        stream,
        rest,
        |frame, bytes| {
            core.borrow().metrics().link_in(bytes);
            Core::on_link_frame(core, key, frame);
        },
        || core.borrow_mut().flush(),
    )
    .await;
    core.borrow_mut().remove_link(key);
    why
}
