//! Keeps this node's lease alive and, when it is lost, registers the node
//! again under the same id.
//!
//! Readiness follows what the node can know: a lease is alive for `ttl` after
//! etcd last confirmed it, whether or not etcd answers now. So an etcd outage
//! shorter than the TTL changes nothing (the node keeps serving and stays
//! ready, as docs/api.md §4 asks), and once the TTL has passed without a
//! confirmation the node reports itself not ready and keeps trying to get a
//! new lease and put its record back. Only when another node's record holds
//! the id is the node lost: the clientIds it issued would now route to
//! someone else, so its connections must close.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tracing::{debug, error, info, warn};

use super::store::{Claim, Store};
use super::Internal;
use crate::logtext::esc;

/// What the lease task tells the membership loop.
#[derive(Debug)]
pub(super) enum LeaseEvent {
    /// The TTL passed without a confirmation: not ready.
    Lost,
    /// Registered again under a new lease: ready.
    Regained,
    /// Another node holds our id.
    NodeLost,
}

/// The lease-keeping task of one node.
pub(super) struct LeaseTask {
    store: Arc<Store>,
    node_id: u16,
    /// Our `nodes/<id>` value.
    record: Vec<u8>,
    /// The current lease, shared so that shutdown revokes the right one.
    lease: Arc<AtomicI64>,
    /// When the request of the last confirmation (or the grant) was sent.
    confirmed: Instant,
    events: UnboundedSender<Internal>,
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    failing: bool,
}

impl LeaseTask {
    pub fn new(
        store: Arc<Store>,
        node_id: u16,
        record: Vec<u8>,
        lease: Arc<AtomicI64>,
        confirmed: Instant,
        events: UnboundedSender<Internal>,
    ) -> Self {
        Self {
            store,
            node_id,
            record,
            lease,
            confirmed,
            events,
            stream: None,
            failing: false,
        }
    }

    pub async fn run(mut self) {
        loop {
            self.keep().await;
            warn!(
                node = self.node_id,
                "lease lost: not ready until registered again"
            );
            self.emit(LeaseEvent::Lost);
            if !self.regain().await {
                error!(
                    node = self.node_id,
                    "node id taken by another node: node lost"
                );
                self.emit(LeaseEvent::NodeLost);
                return;
            }
            info!(
                node = self.node_id,
                "registered again under a new lease: ready"
            );
            self.emit(LeaseEvent::Regained);
        }
    }

    fn emit(&self, event: LeaseEvent) {
        let _ = self.events.send(Internal::Lease(event));
    }

    /// Renews every ttl/3; returns once the lease must be taken as lost.
    async fn keep(&mut self) {
        loop {
            let deadline = self.confirmed + self.store.ttl;
            let sent = Instant::now();
            if sent >= deadline {
                return;
            }
            let budget = self.store.timeout.min(deadline - sent);
            match timeout(budget, self.renew()).await {
                Ok(Ok(true)) => self.renewed(sent).await,
                Ok(Ok(false)) => {
                    warn!(node = self.node_id, "etcd no longer knows our lease");
                    return;
                }
                Ok(Err(e)) => self.failed(&e, deadline).await,
                Err(_) => self.failed(&"etcd did not answer", deadline).await,
            }
        }
    }

    async fn renewed(&mut self, sent: Instant) {
        self.confirmed = sent;
        if std::mem::take(&mut self.failing) {
            info!(node = self.node_id, "etcd answers again; lease kept");
        }
        sleep(self.store.ttl / 3).await;
    }

    async fn failed(&mut self, why: &(dyn std::fmt::Display + Sync), deadline: Instant) {
        self.stream = None;
        if !std::mem::replace(&mut self.failing, true) {
            warn!(node = self.node_id, error = %esc(why), "lease keep-alive failing; still ready until the TTL passes");
        }
        sleep_until(deadline.min(Instant::now() + self.store.retry_delay())).await;
    }

    /// One keep-alive round trip: Ok(false) when etcd says the lease is gone.
    async fn renew(&mut self) -> Result<bool, etcd_client::Error> {
        let Some((keeper, stream)) = self.stream.as_mut() else {
            return self.open().await;
        };
        keeper.keep_alive().await?;
        match stream.message().await? {
            Some(resp) => Ok(resp.ttl() > 0),
            None => Err(etcd_client::Error::LeaseKeepAliveError(
                "keep-alive stream ended".into(),
            )),
        }
    }

    /// Opens the keep-alive stream; opening is itself a first keep-alive.
    async fn open(&mut self) -> Result<bool, etcd_client::Error> {
        let id = self.lease.load(Ordering::SeqCst);
        match self.store.client.lease_client().keep_alive(id).await {
            Ok(pair) => {
                self.stream = Some(pair);
                Ok(true)
            }
            // etcd-client's words for a first answer with TTL 0.
            Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gets a new lease and puts our record back; false when the id is taken.
    async fn regain(&mut self) -> bool {
        self.stream = None;
        loop {
            match self.try_regain().await {
                Ok(Claim::Claimed) => return true,
                Ok(Claim::Taken) => return false,
                Ok(Claim::Conflict) => debug!(node = self.node_id, "node record changed; retrying"),
                Err(e) => {
                    debug!(node = self.node_id, error = %esc(&e), "re-registration failed; retrying")
                }
            }
            sleep(self.store.retry_delay()).await;
        }
    }

    async fn try_regain(&mut self) -> Result<Claim, super::store::Fail> {
        let sent = Instant::now();
        let lease = self.store.grant().await?;
        self.lease.store(lease, Ordering::SeqCst);
        self.confirmed = sent;
        self.failing = false;
        self.store
            .claim_node(self.node_id, &self.record, lease)
            .await
    }
}
