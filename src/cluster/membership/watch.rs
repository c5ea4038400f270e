//! Follows every change under the cluster's keys.
//!
//! The watch starts at the snapshot revision + 1, so nothing between the
//! snapshot and the watch is missed. A watch stream can break (etcd
//! restarted, connection lost, history compacted): events may then have been
//! missed, so the task takes a new snapshot and watches again from there. The
//! membership loop compares revisions and emits only real changes.

use std::sync::Arc;

use etcd_client::{Event, EventType, WatchOptions};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::sleep;
use tracing::{debug, info, warn};

use super::store::{Key, Record, Store};
use super::{Internal, Peer};
use crate::logtext::esc;
use crate::registry::SystemEntry;

/// One change seen by the watch; node changes carry their revision.
#[derive(Debug)]
pub(super) enum Change {
    NodeUp(u16, Peer, i64),
    NodeDown(u16, i64),
    System(String, SystemEntry),
}

/// Watches from `from` on; re-snapshots and re-watches whenever the stream
/// breaks. Ends when the membership loop is gone.
pub(super) async fn run(store: Arc<Store>, mut from: i64, out: UnboundedSender<Internal>) {
    loop {
        if let Err(e) = follow(&store, from, &out).await {
            warn!(error = %esc(&e), "etcd watch broke; reading the cluster state again");
        }
        if out.is_closed() {
            return;
        }
        from = resnapshot(&store, &out).await + 1;
        info!(revision = from - 1, "cluster state read again; watching");
    }
}

/// Retries a snapshot until etcd answers; hands it over, returns its revision.
async fn resnapshot(store: &Store, out: &UnboundedSender<Internal>) -> i64 {
    loop {
        sleep(store.retry_delay()).await;
        match store.snapshot().await {
            Ok(snapshot) => {
                let revision = snapshot.revision;
                let _ = out.send(Internal::Snapshot(snapshot));
                return revision;
            }
            Err(e) => debug!(error = %esc(&e), "snapshot failed; retrying"),
        }
    }
}

/// Delivers watch events until the stream breaks (Err) or nobody listens (Ok).
async fn follow(store: &Store, from: i64, out: &UnboundedSender<Internal>) -> Result<(), String> {
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut client = store.client.watch_client();
    let mut stream = store
        .call("watch", client.watch(store.keys.base(), Some(options)))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return Err("watch stream ended".into()),
            Err(e) => return Err(e.to_string()),
        };
        if resp.canceled() {
            return Err(format!("watch canceled: {}", resp.cancel_reason()));
        }
        let changes = changes(store, resp.events());
        if !changes.is_empty() && out.send(Internal::Changes(changes)).is_err() {
            return Ok(());
        }
    }
}

fn changes(store: &Store, events: &[Event]) -> Vec<Change> {
    events.iter().filter_map(|ev| change(store, ev)).collect()
}

fn change(store: &Store, event: &Event) -> Option<Change> {
    let kv = event.kv()?;
    match event.event_type() {
        EventType::Put => match store.decode(kv)? {
            Record::Node(id, peer) => Some(Change::NodeUp(id, peer, kv.mod_revision())),
            Record::System(id, entry) => Some(Change::System(id, entry)),
        },
        EventType::Delete => {
            store.forget(kv.key());
            match store.keys.parse(kv.key())? {
                Key::Node(id) => Some(Change::NodeDown(id, kv.mod_revision())),
                Key::System(id) => {
                    warn!(
                        system = %esc(id),
                        "system entry deleted in etcd; nodes keep it until restart"
                    );
                    None
                }
            }
        }
    }
}
