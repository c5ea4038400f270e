//! Where a clientId lives: this node (which core, which slot), another
//! node, or nowhere any more. The id itself says it (docs/api.md §3); only
//! an id of a node this core has not heard of makes it re-read membership.

use super::CoreRef;
use crate::api::error::ApiError;
use crate::op::ConnAddr;

/// Where a clientId of this system lives, or that it cannot be live.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    Local {
        core: u8,
        addr: ConnAddr,
    },
    Remote {
        node: u16,
        core: u8,
        addr: ConnAddr,
    },
    /// Well-formed and of this system, but of a node or a run of a node
    /// that is not (or no longer) in the cluster: offline.
    Gone,
}

/// Decodes `text` as a clientId of `system` and finds its connection's
/// place. A malformed or forged id, or one of another system, is
/// `InvalidClientId`.
pub async fn locate(core: &CoreRef, system: &str, text: &str) -> Result<Location, ApiError> {
    let (id, node) = {
        let c = core.borrow();
        let id = c
            .node
            .codec
            .decode(text, system)
            .map_err(|_| ApiError::InvalidClientId)?;
        (id, c.node.clone())
    };
    let addr = ConnAddr {
        slot: id.slot,
        gen: id.generation,
    };
    if id.node == node.node_id {
        let here = id.epoch == node.epoch && (id.core as usize) < node.cores();
        return Ok(match here {
            true => Location::Local {
                core: id.core,
                addr,
            },
            false => Location::Gone,
        });
    }
    let known = |core: &CoreRef| {
        let c = core.borrow();
        c.peers
            .as_ref()
            .and_then(|p| p.view.table.get(&id.node).cloned())
    };
    let mut peer = known(core);
    let checked = |core: &CoreRef| {
        let mut c = core.borrow_mut();
        c.peers
            .as_mut()
            .is_none_or(|p| p.view.recently_unknown(id.node))
    };
    if peer.is_none() && !checked(core) {
        // An id from a node we have not seen: re-read membership first.
        let Some(m) = node.membership.clone() else {
            return Ok(Location::Gone);
        };
        m.refresh().await;
        core.borrow_mut().set_peers(node.peers());
        peer = known(core);
    }
    Ok(match peer {
        Some(p) if p.started as u32 == id.epoch && id.core < p.cores => Location::Remote {
            node: id.node,
            core: id.core,
            addr,
        },
        _ => Location::Gone,
    })
}
