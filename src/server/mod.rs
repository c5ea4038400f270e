//! Starting a node: registry, listeners, one thread per core (pinned to a
//! CPU with `server.pin_cores`), and the graceful shutdown on SIGTERM/SIGINT.
//! The top of the layering (docs/architecture.md): it wires every other
//! module together.

mod core_thread;
mod listen;

use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::api::resume_token::ResumeTokens;
use crate::client_id::ClientIdCodec;
use crate::cluster::membership::{self, ClusterEvent, MembershipError, NodeInfo};
use crate::cluster::ClusterView;
use crate::config::{AuthMode, Config};
use crate::mailbox::{channel, CoreMsg, MailboxRx, MailboxTx};
use crate::node::{ClusterJoin, Node, Systems};
use crate::registry::{new_secret, Registry, RegistryError, RegistryWriter, SystemEntry};
use crate::webhook::{self, WebhookError, WebhookThread, Webhooks};
use core_thread::run_core;
use listen::{bind_listener, ensure_port_free};

/// Open-file limit below which the startup log warns that the node is not
/// tuned for production.
const PRODUCTION_NOFILE: u64 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("core {0} failed: {1}")]
    Core(usize, String),
    #[error("cannot join the cluster")]
    Cluster(#[from] MembershipError),
    #[error("cannot start webhook delivery")]
    Webhook(#[from] WebhookError),
}

/// Runs the node until a signal has drained it. Returns when every core
/// has stopped (or `server.shutdown_timeout` passed).
pub fn run(config: Config) -> Result<(), StartError> {
    let cores = config.worker_count();
    let listeners = bind_all(config.server.http_addr, cores)?;
    let links: Vec<Option<std::net::TcpListener>> = match config.cluster.enabled {
        true => bind_all(config.cluster.listen_addr, cores)?
            .into_iter()
            .map(Some)
            .collect(),
        false => (0..cores).map(|_| None).collect(),
    };
    let (webhooks, webhook_thread) = start_webhooks(&config)?.unzip();
    let (node, mailboxes) = build_node(config, cores, webhooks)?;
    log_startup(&node, cores);
    let signals = Signals::new([SIGTERM, SIGINT])?;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let cpus = if node.config.server.pin_cores {
        allowed_cpus()
    } else {
        Vec::new()
    };
    let sockets = listeners.into_iter().zip(links);
    for (id, ((listener, links), mailbox)) in sockets.zip(mailboxes).enumerate() {
        let node = node.clone();
        let done = done_tx.clone();
        let cpu = cpus.get(id % cpus.len().max(1)).copied();
        std::thread::Builder::new()
            .name(format!("shardcast-core{id}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
                        tracing::warn!(core = id, cpu, error = ?e, "cannot pin a core thread to its CPU");
                    }
                }
                let result = run_core(node, id as u8, mailbox, listener, links);
                let _ = done.send((id, result.map_err(|e| e.to_string())));
            })?;
    }
    let watcher = node.clone();
    let signals_handle = signals.handle();
    let signal_thread = std::thread::spawn(move || {
        let mut signals = signals;
        let Some(sig) = signals.forever().next() else {
            return false;
        };
        tracing::info!(signal = sig, "shutting down: draining connections");
        watcher.begin_shutdown();
        if let Some(m) = &watcher.membership {
            // Group history first goes to its next owners (bounded by the
            // request timeout); then revoking the lease tells the peers at
            // once that we are gone; it runs while the cores drain.
            watcher
                .wait_handed_over(watcher.config.cluster.request_timeout + Duration::from_secs(1));
            m.shutdown();
        }
        true
    });
    let result = wait(&node, cores, &done_rx);
    signals_handle.close();
    // The process exits when this returns: the lease is revoked first,
    // however short the drain was (a node without WebSockets stops its
    // cores at once, before etcd has answered the revoke).
    let left = signal_thread.join().unwrap_or(false);
    if let (false, Some(m)) = (left, &node.membership) {
        m.shutdown();
    }
    if let Some(thread) = webhook_thread {
        // The disconnects of the drain are queued by now; they get what is
        // left of the shutdown time.
        thread.finish(node.drain_time_left());
    }
    result
}

/// The webhook thread, when events may have somewhere to go: `webhook.url`
/// is set, or (token mode) a system may register its own `webhookUrl`.
fn start_webhooks(config: &Config) -> Result<Option<(Webhooks, WebhookThread)>, StartError> {
    let wanted = !config.webhook.url.is_empty() || config.api.auth == AuthMode::Token;
    Ok(match wanted {
        true => Some(webhook::start(&config.webhook)?),
        false => None,
    })
}

/// Waits for the cores. A core that stops before shutdown was asked
/// for is a failure; after it, we give them `shutdown_timeout` (+1 s).
fn wait(
    node: &Node,
    cores: usize,
    done: &std::sync::mpsc::Receiver<(usize, Result<(), String>)>,
) -> Result<(), StartError> {
    let mut finished = 0;
    let mut deadline: Option<Instant> = None;
    while finished < cores {
        let received = match deadline {
            Some(d) => done
                .recv_timeout(d.saturating_duration_since(Instant::now()))
                .ok(),
            None => done.recv_timeout(Duration::from_millis(100)).ok(),
        };
        if deadline.is_none() && node.is_draining() {
            deadline =
                Some(Instant::now() + node.config.server.shutdown_timeout + Duration::from_secs(1));
        }
        match received {
            Some((id, Err(e))) => return Err(StartError::Core(id, e)),
            Some((id, Ok(()))) if !node.is_draining() => {
                return Err(StartError::Core(id, "stopped unexpectedly".into()))
            }
            Some(_) => finished += 1,
            None if deadline.is_some_and(|d| Instant::now() >= d) => {
                tracing::warn!("shutdown timeout passed with cores still draining");
                break;
            }
            None => {}
        }
    }
    Ok(())
}

/// How long a start waits for a port that is still in use.
const PORT_WAIT: Duration = Duration::from_secs(5);
/// Time between two tries to bind a port that is in use.
const PORT_RETRY: Duration = Duration::from_millis(20);

/// One listener per core on `addr`. A port in use (EADDRINUSE) is tried
/// again for up to [`PORT_WAIT`], said once in the log: a node that exited
/// a moment ago still holds its listeners for a few milliseconds (io_uring
/// tears its sockets down after the process is gone), so a restart on the
/// same port would otherwise fail. Past that, or on any other error, the
/// start fails as it would at once.
fn bind_all(
    addr: std::net::SocketAddr,
    cores: usize,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    let deadline = Instant::now() + PORT_WAIT;
    let mut told = false;
    loop {
        match try_bind_all(addr, cores) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !told {
                    told = true;
                    tracing::warn!(%addr, waiting_up_to = ?PORT_WAIT,
                        "the port is still in use (by a process that just exited?): waiting for it");
                }
                std::thread::sleep(PORT_RETRY);
            }
            Err(source) => return Err(StartError::Listen { addr, source }),
            Ok(listeners) => {
                if told {
                    tracing::info!(%addr, "the port is free: listening");
                }
                return Ok(listeners);
            }
        }
    }
}

/// Checks that nobody listens on `addr`, then binds one listener per core
/// (the ones bound are closed again on an error).
fn try_bind_all(
    addr: std::net::SocketAddr,
    cores: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    ensure_port_free(addr)?;
    (0..cores).map(|_| bind_listener(addr)).collect()
}

fn build_node(
    config: Config,
    cores: usize,
    webhooks: Option<Webhooks>,
) -> Result<(Arc<Node>, Vec<MailboxRx>), StartError> {
    let key = match config.crypto_key_bytes() {
        Some(k) => k,
        None => random_bytes(16)?,
    };
    let codec = ClientIdCodec::new(&key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..cores).map(|_| channel::channel()).unzip();
    let view = Arc::new(ClusterView::new(!config.cluster.enabled));
    let (systems, join) = if config.cluster.enabled {
        let (systems, join) = join_cluster(&config, cores, &view, senders.clone())?;
        (Systems::Etcd(systems), Some(join))
    } else {
        let registry = open_registry(&config)?;
        let list = registry
            .systems()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (Systems::File(RegistryWriter::start(registry)?, list), None)
    };
    let mut key = [0u8; 8];
    key.copy_from_slice(&random_bytes(8)?);
    let message_key = u64::from_le_bytes(key);
    // 32 bytes: a resume token is a credential to a session.
    let resume = ResumeTokens::new(&random_bytes(32)?);
    let parts = ((codec, resume), systems, senders, view, message_key);
    let node = Node::new(config, parts, join, webhooks);
    Ok((Arc::new(node), receivers))
}

/// The CPUs this process may run on, in order: its affinity mask, where a
/// container's cpuset shows (`server.pin_cores` pins core N to the Nth).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set, and
    // sched_getaffinity writes at most the size it is given.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return Vec::new();
    }
    let max = libc::CPU_SETSIZE as usize;
    // SAFETY: every index is below CPU_SETSIZE, the set's capacity.
    (0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Joins the cluster before any core starts: the node id goes into every
/// clientId. Events from etcd flow into `view` from then on.
fn join_cluster(
    config: &Config,
    cores: usize,
    view: &Arc<ClusterView>,
    mailboxes: Vec<MailboxTx>,
) -> Result<(Vec<(String, SystemEntry)>, ClusterJoin), StartError> {
    let epoch = crate::clock::unix_seconds() as u32;
    let me = NodeInfo {
        addr: config.cluster.advertise_addr.clone(),
        cores: cores as u8,
        version: env!("CARGO_PKG_VERSION").into(),
        started: u64::from(epoch),
    };
    let mut systems = Vec::with_capacity(config.api.systems.len());
    for id in &config.api.systems {
        systems.push((id.clone(), fresh_entry(config)?));
    }
    let sink = view.clone();
    let apply = move |e: ClusterEvent| {
        sink.apply(&e);
        if let Some(make) = CoreMsg::from_cluster(&e) {
            for mb in &mailboxes {
                let _ = mb.send(make());
            }
        }
    };
    let give_secrets = config.api.auth == AuthMode::Token;
    let joined = membership::join(&config.cluster, me, systems, give_secrets, Box::new(apply))?;
    view.apply(&ClusterEvent::Peers(Arc::new(joined.peers)));
    view.apply(&ClusterEvent::Ready(true));
    let join = ClusterJoin {
        node_id: joined.node_id,
        epoch,
        membership: joined.handle,
    };
    Ok((joined.systems, join))
}

/// A new system's entry: a fresh secret in token mode.
fn fresh_entry(config: &Config) -> std::io::Result<SystemEntry> {
    let secret = match config.api.auth {
        AuthMode::Token => Some(new_secret()?),
        AuthMode::Open => None,
    };
    Ok(SystemEntry {
        secret,
        webhook_url: None,
    })
}

fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).map_err(std::io::Error::other)?;
    Ok(b)
}

/// Loads the registry and registers the systems of `api.systems` that it
/// does not hold yet (in token mode with a fresh secret, kept in the data
/// directory where the operator can read it).
fn open_registry(config: &Config) -> Result<Registry, StartError> {
    let mut registry = Registry::open(&config.server.data_dir)?;
    for id in &config.api.systems {
        if registry.systems().contains_key(id) {
            continue;
        }
        match registry.register(id, fresh_entry(config)?) {
            Ok(()) | Err(RegistryError::Taken) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if config.api.auth == AuthMode::Token {
        for id in registry.give_secrets(new_secret)? {
            let id = crate::logtext::esc(&id);
            tracing::warn!(system = %id, "the system had no secret: a new one is in systems.json");
        }
    }
    Ok(registry)
}

fn log_startup(node: &Node, cores: usize) {
    let driver = if monoio::utils::detect_uring() {
        "io_uring"
    } else {
        "epoll"
    };
    let nofile = open_file_limit();
    let cfg = &node.config.server;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        addr = %cfg.http_addr,
        driver,
        cores,
        open_file_limit = nofile,
        node = node.node_id,
        "shardcast listening"
    );
    let max = cfg.max_connections as u64;
    if max > 0 && nofile < max {
        tracing::warn!(
            open_file_limit = nofile,
            max_connections = max,
            "open-file limit is below server.max_connections: raise LimitNOFILE / ulimit -n"
        );
    } else if nofile < PRODUCTION_NOFILE {
        tracing::warn!(
            open_file_limit = nofile,
            "open-file limit is low for production (see conf/ for tuning)"
        );
    }
}

fn open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    }
}
