//! The flush path as a core runs it: pushes fanned out to every connection
//! of a system (`CoreMsg::System`, as `send_to_system` hands it to a core),
//! then `Core::flush` writing each dirty connection's queue — one write per
//! connection carrying the 1, 4 or 16 frames queued since the last flush.
//!
//! Why it matters: at one push now and then (a paced publisher), each
//! delivery is one write, and what the core spends per write beside the
//! kernel's `sendmsg` is its whole share of a delivery's cost; under load,
//! the core flushes in slices (`core/write.rs`) so that a queue holds
//! several frames by the time it is written, and that is what coalescing
//! buys per frame. This drives a real `Core` with the shipped configuration
//! (`conf/shardcast.toml`: session resume on, so each push goes into the
//! replay log too) over loopback TCP, so that everything a delivery costs
//! the core is in it: the index walk, the queue, the dirty list and its
//! clock, the connection's slab entry and state, its socket, the write
//! itself and the write-wait histogram. [`CONNS`] connections, a core's
//! share of the 10,000 subscribers of `scripts/bench-vs-nchan.sh`, so that
//! their state does not sit in the CPU's caches between two writes any
//! more than on a node. A push is a 64-byte `data` in the JSON envelope
//! (~125 bytes). The readers are drained outside the timed part.
//!
//! Timed in the thread's CPU time, not the wall clock, which a loaded
//! machine blurs: on loopback the kernel's work for a send — the receiving
//! end's included — is done in the sending thread's call, so it is all in.

use std::hint::black_box;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast::api::resume_token::ResumeTokens;
use shardcast::client_id::ClientIdCodec;
use shardcast::cluster::ClusterView;
use shardcast::config::Config;
use shardcast::core::{let_others_in, Core, CoreRef};
use shardcast::mailbox::{channel::channel, CoreMsg};
use shardcast::node::{Node, Systems};
use shardcast::registry::SystemEntry;
use shardcast::ws::message::push_frame;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::thread_cpu_ns;

/// Connections of the one core.
const CONNS: usize = 5_000;
/// The system of the shipped configuration.
const SYSTEM: &str = "demo";

/// A node of one core with the shipped configuration.
fn node() -> (Arc<Node>, shardcast::mailbox::MailboxRx) {
    let shipped = include_str!("../conf/shardcast.toml");
    let (config, _) = Config::from_toml_str(shipped, []).expect("the shipped config");
    let codec = ClientIdCodec::new(&[7; 16]).expect("key");
    let resume = ResumeTokens::new(&[9; 32]);
    // The list of systems as a node reads it at start; no registry file.
    let systems = Systems::Etcd(vec![(SYSTEM.to_owned(), SystemEntry::default())]);
    let (tx, rx) = channel();
    let view = Arc::new(ClusterView::new(true));
    let parts = ((codec, resume), systems, vec![tx], view, 1);
    (Arc::new(Node::new(config, parts, None, None)), rx)
}

/// Raises the open-file limit to its hard limit; the connections that fit
/// under it (two descriptors each), at most [`CONNS`].
fn conns_that_fit() -> usize {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    let fit = (lim.rlim_cur as usize).saturating_sub(256) / 2;
    if fit < CONNS {
        eprintln!("flush: the open-file limit allows {fit} connections, not {CONNS}");
    }
    fit.min(CONNS)
}

/// Opens `n` loopback connections on the core; their client ends, which
/// have read the 101 answer and the welcome.
fn open(core: &CoreRef, n: usize, buf: &mut [u8]) -> Vec<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nodelay(true).expect("nodelay");
        server.set_nonblocking(true).expect("nonblocking");
        let server = monoio::net::TcpStream::from_std(server).expect("register");
        let answer = Bytes::from_static(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        let opened = core
            .borrow_mut()
            .open_conn(Rc::new(server), SYSTEM, "", answer, None, false);
        opened.expect("a slot");
        client.set_nonblocking(true).expect("nonblocking");
        clients.push(client);
    }
    drain(&clients, buf);
    clients
}

/// Reads whatever the clients hold, so the next round's writes never block.
fn drain(clients: &[TcpStream], buf: &mut [u8]) {
    for mut c in clients {
        while matches!(c.read(buf), Ok(n) if n > 0) {}
    }
}

/// `pushes` pushes to the system, then the flush and the flusher's slices
/// until every queue is written.
async fn push_and_flush(core: &CoreRef, pushes: usize, data: &str) {
    let system: Arc<str> = Arc::from(SYSTEM);
    for _ in 0..pushes {
        let mut c = core.borrow_mut();
        let id = c.ids.next();
        let frame = c.encode(push_frame(id, "", 0, "success", data));
        c.handle(CoreMsg::System {
            system: system.clone(),
            frame,
        });
    }
    core.borrow_mut().flush();
    let yield_socket = core.borrow().yield_socket();
    while core.borrow().flushing() {
        let_others_in(yield_socket.as_ref()).await;
    }
}

fn bench_flush(c: &mut Criterion) {
    let (node, mailbox) = node();
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(4096)
        .build()
        .expect("runtime");
    let mut buf = vec![0u8; 64 * 1024];
    let n = conns_that_fit();
    let (core, clients) = rt.block_on(async {
        let core = Core::new(node, 0, Rc::new(mailbox)).expect("core");
        let clients = open(&core, n, &mut buf);
        (core, clients)
    });
    // 64 bytes of data: a JSON string of 62 characters.
    let data = format!("\"{}\"", "x".repeat(62));
    let mut group = c.benchmark_group("flush");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    for per_write in [1usize, 4, 16] {
        group.throughput(Throughput::Elements((clients.len() * per_write) as u64));
        group.bench_function(format!("{per_write}_frames_per_write"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = thread_cpu_ns();
                    rt.block_on(push_and_flush(&core, per_write, &data));
                    spent += Duration::from_nanos(thread_cpu_ns() - start);
                    drain(&clients, &mut buf);
                }
                black_box(spent)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_flush);
criterion_main!(benches);
