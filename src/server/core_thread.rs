//! One core's thread: its monoio runtime, its accept loops, its mailbox
//! drain, its WebSocket reader, its heartbeat and its graceful drain.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;

use crate::core::conn::reader::read_ready;
use crate::core::{let_others_in, serve_link, Core, CoreRef};
use crate::mailbox::MailboxRx;
use crate::node::Node;
use crate::ws::CloseReason;

/// Mailbox messages handled between two flushes, and between two turns of
/// the core's other tasks, a message inside a `CoreMsg::Batch` counting as
/// one (`Core::take_some_mail`).
const BATCH: usize = 256;

/// The core thread's body: builds the runtime (io_uring, or epoll where
/// io_uring is unavailable) and serves until shutdown has drained.
pub fn run_core(
    node: Arc<Node>,
    id: u8,
    mailbox: MailboxRx,
    listener: std::net::TcpListener,
    links: Option<std::net::TcpListener>,
) -> io::Result<()> {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(4096)
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let mailbox = Rc::new(mailbox);
        let core = Core::new(node.clone(), id, mailbox.clone())?;
        monoio::spawn(drain_mailbox(core.clone(), mailbox));
        monoio::spawn(read_ready(core.clone()));
        monoio::spawn(heartbeat(core.clone()));
        let shutdown = core.borrow().shutdown();
        if let Some(links) = links {
            let links = TcpListener::from_std(links)?;
            let core = core.clone();
            let stop = async move { shutdown.wait().await };
            monoio::spawn(
                async move { accept_loop(&core, links, "cluster", serve_link, stop).await },
            );
        }
        let peers = node.peers();
        core.borrow_mut().set_peers(peers);
        node.core_started();
        // This core's idle HTTP connections (api.max_http_connections).
        let http = Rc::new(crate::service::HttpConns::default());
        // The http listener stays open through the drain: `/readyz` answers
        // 503 there, upgrades are refused with 503 and every answer closes
        // its connection (`service`), until every core has drained.
        let shutdown = core.borrow().shutdown();
        let stop = async {
            shutdown.wait().await;
            drain(&core).await;
        };
        let serve = |core, stream, _| crate::service::serve(core, http.clone(), stream);
        accept_loop(&core, listener, "http", serve, stop).await;
        Ok(())
    })
}

/// Accepts connections until `stop` completes and hands each to `serve`;
/// the listener closes when this returns.
async fn accept_loop<F, Fut, S>(
    core: &CoreRef,
    listener: TcpListener,
    what: &str,
    serve: F,
    stop: S,
) where
    F: Fn(CoreRef, monoio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
    S: std::future::Future<Output = ()>,
{
    let mut stop = std::pin::pin!(stop);
    loop {
        monoio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    // TCP_NODELAY comes from the listener (`listen`).
                    monoio::spawn(serve(core.clone(), stream, addr));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = what, error = %e, "accept failed");
                    monoio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut stop => return,
        }
    }
}

/// Graceful shutdown of this core: every connection gets close 1001, then
/// we wait (bounded by `server.shutdown_timeout`) for them to go, and for
/// the other cores to be done as well: a listener closed early would reset
/// the connections the kernel had queued on it, so no core's listener
/// closes before the node's drain is over.
async fn drain(core: &CoreRef) {
    let node = core.borrow().node.clone();
    // Group history goes to its next owners before the node leaves the
    // cluster (the signal thread waits for it).
    crate::core::history::hand_over_all(core).await;
    node.core_handed_over();
    core.borrow_mut().close_all(CloseReason::Shutdown);
    let deadline = Instant::now() + node.config.server.shutdown_timeout;
    while core.borrow().open_sockets() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    node.core_drained();
    while !node.all_drained() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn drain_mailbox(core: CoreRef, mailbox: Rc<MailboxRx>) {
    let yield_socket = core.borrow().yield_socket();
    loop {
        if !core.borrow().has_mail() {
            let first = mailbox.recv().await;
            core.borrow_mut().hold_mail(first);
        }
        let more = {
            let mut c = core.borrow_mut();
            let more = c.take_some_mail(BATCH);
            c.flush_later();
            more
        };
        // Mail still waiting: the next batch after the sockets, the
        // heartbeat and the accepts have had their turn.
        if more {
            let_others_in(yield_socket.as_ref()).await;
        }
    }
}

/// Closes connections silent for `idle_timeout`, ends detached sessions at
/// `resume_window` and pings each connection once per `ping_interval`,
/// ticking often enough that none is late by more than a quarter of the
/// shortest period. A tick pings only one share of the connections (one
/// in `shares`, `Core::sweep`), so the pings of a full core are spread
/// over the interval instead of written in one run.
async fn heartbeat(core: CoreRef) {
    let (ping, idle, resume) = {
        let ws = &core.borrow().node.config.ws;
        (ws.ping_interval, ws.idle_timeout, ws.resume_window)
    };
    let shortest = [ping, idle, resume]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min();
    let tick =
        (shortest.unwrap_or(ping) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let shares = (ping.as_secs_f64() / tick.as_secs_f64())
        .round()
        .clamp(1.0, 1e6) as u32;
    let mut share: u32 = 0;
    loop {
        monoio::time::sleep(tick).await;
        share = (share + 1) % shares;
        let mut c = core.borrow_mut();
        c.sweep(share, shares);
        c.expire_pending();
        c.sweep_history();
    }
}
