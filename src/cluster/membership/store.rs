//! The etcd operations of membership: key layout, node and system records,
//! node-id claims, snapshots.
//!
//! A paused (SIGSTOP) or partitioned etcd never answers and never errs: a
//! call simply hangs. Every call here therefore goes through [`Store::call`],
//! which bounds it by the request timeout; nothing else in this module waits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use tracing::warn;

use super::registry_codec::RegistryCodec;
use super::{NodeInfo, Peer};
use crate::config::{is_node_addr, ClusterConfig};
use crate::logtext::esc;
use crate::metrics::MembershipMetrics;
use crate::registry::SystemEntry;

/// HTTP/2 ping interval on the etcd connection, so that a connection to an
/// etcd that vanished without a reset breaks (and the watch is re-made).
/// etcd refuses pings more frequent than 5 s (`--grpc-keepalive-min-time`).
const HTTP2_PING: Duration = Duration::from_secs(10);
/// Attempts at allocating a node id before giving up (each re-reads the ids).
const ALLOC_ATTEMPTS: usize = 16;

/// A failed etcd call: it erred, or did not answer in time.
#[derive(Debug)]
pub(super) struct Fail {
    pub what: &'static str,
    pub detail: String,
    pub timed_out: bool,
}

impl Fail {
    fn new(what: &'static str, detail: impl fmt::Display) -> Self {
        Self {
            what,
            detail: detail.to_string(),
            timed_out: false,
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// Key layout under `<etcd_prefix>/<name>/`.
pub(super) struct Keys {
    base: String,
}

/// What a key under the base names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Key<'a> {
    Node(u16),
    System(&'a str),
}

impl Keys {
    pub fn new(prefix: &str, name: &str) -> Self {
        Self {
            base: format!("{}/{}/", prefix.trim_end_matches('/'), name),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.base)
    }

    pub fn node(&self, id: u16) -> String {
        format!("{}nodes/{id}", self.base)
    }

    pub fn system(&self, id: &str) -> String {
        format!("{}systems/{id}", self.base)
    }

    pub fn systems(&self) -> String {
        format!("{}systems/", self.base)
    }

    pub fn parse<'a>(&self, key: &'a [u8]) -> Option<Key<'a>> {
        let rest = std::str::from_utf8(key.strip_prefix(self.base.as_bytes())?).ok()?;
        if let Some(id) = rest.strip_prefix("nodes/") {
            return id.parse().ok().filter(|&id| id != 0).map(Key::Node);
        }
        rest.strip_prefix("systems/")
            .filter(|id| !id.is_empty())
            .map(Key::System)
    }
}

/// A decoded record.
pub(super) enum Record {
    Node(u16, Peer),
    System(String, SystemEntry),
}

/// The state of the cluster at one revision.
pub(super) struct Snapshot {
    pub revision: i64,
    pub nodes: BTreeMap<u16, Peer>,
    pub systems: Vec<(String, SystemEntry)>,
}

/// Outcome of claiming `nodes/<id>`.
pub(super) enum Claim {
    Claimed,
    /// Another node's record is there.
    Taken,
    /// The key changed under us; try again.
    Conflict,
}

/// The etcd client with what every call needs.
pub(super) struct Store {
    pub client: Client,
    pub keys: Keys,
    pub codec: RegistryCodec,
    pub timeout: Duration,
    pub ttl: Duration,
    pub metrics: Arc<MembershipMetrics>,
    /// Keys whose record was rejected, with the `mod_revision` rejected: a
    /// bad write is counted and logged once, however often it is read again
    /// (re-snapshots, refreshes).
    rejected: Mutex<HashMap<Vec<u8>, i64>>,
}

impl Store {
    /// Builds the client. It connects lazily: the first call finds out
    /// whether etcd is there.
    pub async fn connect(
        cfg: &ClusterConfig,
        metrics: Arc<MembershipMetrics>,
    ) -> Result<Self, Fail> {
        let options = ConnectOptions::new()
            .with_connect_timeout(cfg.request_timeout)
            .with_keep_alive(HTTP2_PING, cfg.request_timeout);
        let store = Self {
            client: Client::connect(&cfg.etcd_endpoints, Some(options))
                .await
                .map_err(|e| Fail::new("connect", e))?,
            keys: Keys::new(&cfg.etcd_prefix, &cfg.name),
            codec: RegistryCodec::new(&cfg.secret),
            timeout: cfg.request_timeout,
            ttl: cfg.lease_ttl,
            metrics,
            rejected: Mutex::default(),
        };
        Ok(store)
    }

    /// Pause between attempts while etcd does not answer: short, since each
    /// attempt only costs a local timeout, and the lease has `ttl` at most.
    pub fn retry_delay(&self) -> Duration {
        (self.ttl / 10).clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    /// Runs one etcd call, bounded by the request timeout.
    pub async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Fail> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Fail::new(what, e)),
            Err(_) => Err(Fail {
                what,
                detail: format!("etcd did not answer within {:?}", self.timeout),
                timed_out: true,
            }),
        }
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub async fn grant(&self) -> Result<i64, Fail> {
        let secs = i64::try_from(self.ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1);
        let mut lease = self.client.lease_client();
        Ok(self
            .call("grant lease", lease.grant(secs, None))
            .await?
            .id())
    }

    pub async fn revoke(&self, lease: i64) -> Result<(), Fail> {
        let mut client = self.client.lease_client();
        self.call("revoke lease", client.revoke(lease)).await?;
        Ok(())
    }

    /// Puts `record` at `nodes/<id>` under `lease` unless another node's
    /// record is there. Our own record (the same bytes: address and start
    /// second) under an older lease is moved to the new one: it is a write of
    /// ours that outlived its lease or one about to expire.
    pub async fn claim_node(&self, id: u16, record: &[u8], lease: i64) -> Result<Claim, Fail> {
        let key = self.keys.node(id);
        let put = TxnOp::put(
            key.as_str(),
            record,
            Some(PutOptions::new().with_lease(lease)),
        );
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([put.clone()])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.txn("claim node id", txn).await?;
        if resp.succeeded() {
            return Ok(Claim::Claimed);
        }
        match first_kv(&resp) {
            Some(kv) if kv.value() == record => self.take_over(&key, kv.mod_revision(), put).await,
            Some(_) => Ok(Claim::Taken),
            None => Ok(Claim::Conflict),
        }
    }

    async fn take_over(&self, key: &str, revision: i64, put: TxnOp) -> Result<Claim, Fail> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
            .and_then([put]);
        let resp = self.txn("re-lease node record", txn).await?;
        Ok(if resp.succeeded() {
            Claim::Claimed
        } else {
            Claim::Conflict
        })
    }

    /// Claims the lowest free node id; `None` when all are in use.
    pub async fn allocate(&self, record: &[u8], lease: i64) -> Result<Option<u16>, Fail> {
        for _ in 0..ALLOC_ATTEMPTS {
            let Some(id) = lowest_free(&self.node_ids().await?) else {
                return Ok(None);
            };
            if let Claim::Claimed = self.claim_node(id, record, lease).await? {
                return Ok(Some(id));
            }
        }
        Err(Fail::new(
            "allocate node id",
            "every attempt raced with another node",
        ))
    }

    async fn node_ids(&self) -> Result<BTreeSet<u16>, Fail> {
        let options = GetOptions::new().with_prefix().with_keys_only();
        let mut kv = self.client.kv_client();
        let resp = self
            .call("read node ids", kv.get(self.keys.nodes(), Some(options)))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| match self.keys.parse(kv.key()) {
                Some(Key::Node(id)) => Some(id),
                _ => None,
            })
            .collect())
    }

    /// Creates `systems/<id>` unless it exists; false when it does.
    pub async fn create_system(&self, id: &str, entry: &SystemEntry) -> Result<bool, Fail> {
        let value = self
            .codec
            .encode(id, entry)
            .map_err(|e| Fail::new("encode system entry", e))?;
        let key = self.keys.system(id);
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.txn("register system", txn).await?.succeeded())
    }

    /// Gives every stored system without a secret a new one from `make`
    /// (token mode: a system registered in open mode must not stay
    /// verifiable with an empty key). Each write is conditional on the
    /// key's `mod_revision` as read, so when nodes start at once exactly one
    /// secret per system is stored and every node reads that one afterwards
    /// (the snapshot that follows, or the watch). Returns the ids this node
    /// gave a secret to.
    pub async fn give_secrets(
        &self,
        mut make: impl FnMut() -> std::io::Result<String>,
    ) -> Result<Vec<String>, Fail> {
        let (_, kvs) = self
            .read_prefix("read systems", &self.keys.systems())
            .await?;
        let mut given = Vec::new();
        for kv in &kvs {
            let Some(Record::System(id, mut entry)) = self.decode(kv) else {
                continue;
            };
            if entry.secret.as_deref().is_some_and(|s| !s.is_empty()) {
                continue;
            }
            entry.secret = Some(make().map_err(|e| Fail::new("make a system secret", e))?);
            let value = self
                .codec
                .encode(&id, &entry)
                .map_err(|e| Fail::new("encode system entry", e))?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    kv.key(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(kv.key(), value, None)]);
            if self.txn("give a system a secret", txn).await?.succeeded() {
                given.push(id);
            }
        }
        Ok(given)
    }

    async fn txn(&self, what: &'static str, txn: Txn) -> Result<TxnResponse, Fail> {
        let mut kv = self.client.kv_client();
        self.call(what, kv.txn(txn)).await
    }

    /// Nodes and systems at one revision.
    pub async fn snapshot(&self) -> Result<Snapshot, Fail> {
        let (revision, kvs) = self.read_prefix("snapshot", self.keys.base()).await?;
        let mut snapshot = Snapshot {
            revision,
            nodes: BTreeMap::new(),
            systems: Vec::new(),
        };
        for kv in &kvs {
            match self.decode(kv) {
                Some(Record::Node(id, peer)) => {
                    snapshot.nodes.insert(id, peer);
                }
                Some(Record::System(id, entry)) => snapshot.systems.push((id, entry)),
                None => {}
            }
        }
        Ok(snapshot)
    }

    /// The nodes now, with the revision they were read at.
    pub async fn read_nodes(&self) -> Result<(i64, BTreeMap<u16, Peer>), Fail> {
        let (revision, kvs) = self.read_prefix("read nodes", &self.keys.nodes()).await?;
        let nodes = kvs
            .iter()
            .filter_map(|kv| match self.decode(kv) {
                Some(Record::Node(id, peer)) => Some((id, peer)),
                _ => None,
            })
            .collect();
        Ok((revision, nodes))
    }

    async fn read_prefix(
        &self,
        what: &'static str,
        prefix: &str,
    ) -> Result<(i64, Vec<KeyValue>), Fail> {
        let mut kv = self.client.kv_client();
        let mut resp = self
            .call(what, kv.get(prefix, Some(GetOptions::new().with_prefix())))
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((revision, resp.take_kvs()))
    }

    /// Decodes a stored record. An invalid one — a system entry that does
    /// not open for its key, a node record that does not parse or whose
    /// `addr` is not a node address — is skipped (the view keeps what it
    /// had), counted, and logged with its key: once per write.
    pub fn decode(&self, kv: &KeyValue) -> Option<Record> {
        let decoded = match self.keys.parse(kv.key())? {
            Key::Node(id) => node_record(kv.value())
                .map(|info| Record::Node(id, Peer::new(id, info)))
                .map_err(|why| (RecordKind::Node, why)),
            Key::System(id) => match self.codec.decode(id, kv.value()) {
                Ok(entry) => Ok(Record::System(id.to_owned(), entry)),
                Err(e) => Err((RecordKind::System, e.to_string())),
            },
        };
        match decoded {
            Ok(record) => {
                self.forget(kv.key());
                Some(record)
            }
            Err((kind, why)) => {
                self.reject(kv, kind, &why);
                None
            }
        }
    }

    /// The record at `key` is gone or good again.
    pub fn forget(&self, key: &[u8]) {
        if let Ok(mut rejected) = self.rejected.lock() {
            if !rejected.is_empty() {
                rejected.remove(key);
            }
        }
    }

    fn reject(&self, kv: &KeyValue, kind: RecordKind, why: &str) {
        let first = match self.rejected.lock() {
            Ok(mut rejected) => {
                rejected.insert(kv.key().to_vec(), kv.mod_revision()) != Some(kv.mod_revision())
            }
            Err(_) => true,
        };
        if !first {
            return;
        }
        let key = String::from_utf8_lossy(kv.key());
        match kind {
            RecordKind::Node => {
                self.metrics.node_record_rejected();
                warn!(key = %esc(&key), error = %esc(why), "ignoring an invalid node record");
            }
            RecordKind::System => {
                self.metrics.registry_entry_rejected();
                warn!(
                    key = %esc(&key),
                    error = %esc(why),
                    "ignoring an invalid registry entry; the last good one (if any) is kept"
                );
            }
        }
    }
}

/// Which kind of record was rejected (which counter).
#[derive(Clone, Copy)]
enum RecordKind {
    Node,
    System,
}

/// A node record: JSON whose `addr` is a node address (`config::is_node_addr`).
fn node_record(value: &[u8]) -> Result<NodeInfo, String> {
    let info: NodeInfo = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if !is_node_addr(&info.addr) {
        return Err(format!(
            "addr \"{}\" is not host:port (an IP address, or a host name of ASCII \
             letters, digits, '.' and '-'; a port from 1 to 65535)",
            info.addr
        ));
    }
    Ok(info)
}

fn first_kv(resp: &TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

fn lowest_free(used: &BTreeSet<u16>) -> Option<u16> {
    (1..=u16::MAX).find(|id| !used.contains(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let keys = Keys::new("/shardcast/", "c1");
        assert_eq!(keys.node(7), "/shardcast/c1/nodes/7");
        assert_eq!(keys.system("a/b"), "/shardcast/c1/systems/a/b");
        assert_eq!(keys.parse(keys.node(7).as_bytes()), Some(Key::Node(7)));
        assert_eq!(
            keys.parse(keys.system("a/b").as_bytes()),
            Some(Key::System("a/b"))
        );
        for other in [
            "/shardcast/c1/nodes/0",
            "/shardcast/c1/nodes/x",
            "/shardcast/c2/nodes/1",
        ] {
            assert_eq!(keys.parse(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn node_records_need_a_node_address() {
        let record = |addr: &str| {
            serde_json::to_vec(&NodeInfo {
                addr: addr.into(),
                cores: 2,
                version: "0.1.0".into(),
                started: 1,
            })
            .expect("json")
        };
        assert!(node_record(&record("10.0.0.1:7900")).is_ok());
        assert!(node_record(&record("node1:7900")).is_ok());
        let why = node_record(&record("127.0.0.1:1\nforged line")).expect_err("newline");
        assert!(why.contains("not host:port"), "{why}");
        let logged = esc(&why).to_string();
        assert!(
            logged.contains(r#"addr "127.0.0.1:1\nforged line""#),
            "{logged}"
        );
        for bad in ["h o:1", "x:0", "a\u{2028}b:1"] {
            assert!(node_record(&record(bad)).is_err(), "{bad:?}");
        }
        assert!(node_record(b"{\"addr\":5}").is_err());
    }

    #[test]
    fn lowest_free_fills_gaps() {
        assert_eq!(lowest_free(&BTreeSet::new()), Some(1));
        assert_eq!(lowest_free(&[1, 2, 4].into_iter().collect()), Some(3));
        assert_eq!(lowest_free(&(1..=u16::MAX).collect()), None);
    }
}
