//! One worker: its share of subscriber connections on one epoll thread, through the
//! phases a parent drives — connect (and, in shardcast group mode, bind to the group
//! and let the online notices die down), report ready, count marked messages from Go
//! until all expected arrived or the drain timeout passed, report, close. In a `chat`
//! run the worker is its own publisher: from Go its connections send client messages
//! for the run's duration, and the marked frames it counts are their acks.

use crate::clock::mono_ns;
use crate::http_client::{Pool, PoolConfig};
use crate::ipc::{BindSpec, Cmd, Event, ReadyReport, ResultReport, WorkerSpec};
use crate::poller::{Event as PollEvent, Poller};
use crate::procstat::self_cpu;
use crate::sender::Sender;
use crate::sock;
use crate::subscriber::{SubConfig, Subscribers};

/// Epoll tokens at and above this belong to the bind pool.
pub(crate) const POOL_TOKENS: u64 = 1 << 40;

pub fn run(spec: WorkerSpec, cmds: flume::Receiver<Cmd>, emit: &mut dyn FnMut(Event)) {
    let r = if spec.resume.is_some() {
        crate::resume_worker::run_phases(spec, cmds, emit)
    } else {
        run_phases(spec, cmds, emit)
    };
    if let Err(e) = r {
        emit(Event::Error {
            message: format!("{e:#}"),
        });
    }
}

pub(crate) enum Next {
    Continue,
    Stop,
}

/// Takes the pending commands; `on` sees each; a Close or a vanished parent stops.
pub(crate) fn drain_cmds(cmds: &flume::Receiver<Cmd>, mut on: impl FnMut(Cmd)) -> Next {
    loop {
        match cmds.try_recv() {
            Ok(Cmd::Close) | Err(flume::TryRecvError::Disconnected) => return Next::Stop,
            Ok(cmd) => on(cmd),
            Err(flume::TryRecvError::Empty) => return Next::Continue,
        }
    }
}

fn run_phases(
    spec: WorkerSpec,
    cmds: flume::Receiver<Cmd>,
    emit: &mut dyn FnMut(Event),
) -> anyhow::Result<()> {
    sock::raise_nofile();
    emit(Event::Started {
        pid: std::process::id(),
    });
    loop {
        match cmds.recv() {
            Ok(Cmd::Connect) => break,
            Ok(Cmd::Close) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
    let cpu = || if spec.is_child { self_cpu() } else { 0.0 };
    let cpu_connect = cpu();
    let mut poller = Poller::new()?;
    let mut events: Vec<PollEvent> = Vec::new();
    let mut subs = Subscribers::new(SubConfig {
        dst: spec.dst,
        host: spec.host.clone(),
        path: spec.path.clone(),
        sources: spec.sources.clone(),
        count: spec.connections,
        concurrency: spec.concurrency.max(1),
        want_welcome: spec.want_welcome,
        capture_ids: spec.capture_ids || spec.bind.is_some(),
        acks: spec.chat.is_some(),
    });

    // Connect.
    while !subs.all_resolved() {
        subs.start_more(&poller, mono_ns());
        poller.wait(&mut events, 50)?;
        for &(token, bits) in &events {
            subs.handle(&poller, token, bits);
        }
        if let Next::Stop = drain_cmds(&cmds, |_| {}) {
            return Ok(());
        }
    }

    // Bind (shardcast group mode), reading the notices meanwhile.
    let (mut bind_requests, mut bind_failed) = (0, 0);
    if let Some(bind) = &spec.bind {
        if !subs.client_ids.is_empty() {
            let pool = bind_pool(bind, subs.client_ids.clone());
            bind_requests = subs.client_ids.len() as u64;
            let mut pool = pool;
            pool.start(&poller);
            while !pool.done() {
                pool.pump(&poller, mono_ns());
                poller.wait(&mut events, 50)?;
                for &(token, bits) in &events {
                    if pool.owns(token) {
                        pool.handle(&poller, token, bits);
                    } else {
                        subs.handle(&poller, token, bits);
                    }
                }
                if let Next::Stop = drain_cmds(&cmds, |_| {}) {
                    return Ok(());
                }
            }
            bind_failed = bind_requests - pool.succeeded;
            for (e, n) in &pool.errors {
                subs.stats.errors.push((format!("bind: {e}"), *n));
            }
        }
    }

    // Let the setup traffic (welcome stragglers, online notices) die down.
    let quiet = spec.quiet_ms * 1_000_000;
    let quiet_from = mono_ns();
    loop {
        let now = mono_ns();
        if now.saturating_sub(subs.stats.last_frame_ns.max(quiet_from)) >= quiet {
            break;
        }
        poller.wait(&mut events, 20)?;
        for &(token, bits) in &events {
            subs.handle(&poller, token, bits);
        }
        if let Next::Stop = drain_cmds(&cmds, |_| {}) {
            return Ok(());
        }
    }
    let st = &subs.stats;
    emit(Event::Ready(Box::new(ReadyReport {
        opened: st.opened,
        failed: st.failed,
        handshake: st.handshake.to_wire(),
        first_start_ns: st.first_start_ns,
        last_ready_ns: st.last_ready_ns,
        client_ids: if spec.capture_ids {
            std::mem::take(&mut subs.client_ids)
        } else {
            Vec::new()
        },
        bind_requests,
        bind_failed,
        setup_frames: st.other,
        setup_done_ns: mono_ns(),
        cpu_s: cpu() - cpu_connect,
        errors: st.errors.clone(),
    })));
    subs.stats.reset_traffic();
    subs.stats.errors.clear();

    // Hold and count.
    let mut expected: Option<u64> = None;
    let mut cpu_go = 0.0;
    let mut publish_done: Option<u64> = None;
    let mut sender: Option<Sender> = None;
    let mut reported = false;
    let drain = spec.drain_timeout_ms * 1_000_000;
    loop {
        poller.wait(&mut events, 20)?;
        for &(token, bits) in &events {
            subs.handle(&poller, token, bits);
        }
        let next = drain_cmds(&cmds, |cmd| match cmd {
            Cmd::Go { expected: e } => {
                cpu_go = cpu();
                match &spec.chat {
                    Some(chat) => sender = Some(Sender::new(chat.clone(), mono_ns())),
                    None => expected = Some(e),
                }
                emit(Event::Armed);
            }
            Cmd::PublishDone => publish_done = Some(mono_ns()),
            Cmd::Connect | Cmd::Close | Cmd::Drop { .. } | Cmd::Resume { .. } => {}
        });
        if let Next::Stop = next {
            subs.close_all();
            return Ok(());
        }
        // chat: send until the duration has passed, then wait for the acks.
        if let (Some(s), None) = (sender.as_mut(), publish_done) {
            let now = mono_ns();
            if s.finished(now) {
                expected = Some(s.sent);
                publish_done = Some(now);
            } else {
                let acked = subs.stats.marked;
                s.pump(&mut subs, &poller, acked, now);
            }
        }
        if let (Some(exp), false) = (expected, reported) {
            let now = mono_ns();
            let st = &subs.stats;
            let all_in = st.marked >= exp;
            let gave_up =
                publish_done.is_some_and(|t| now.saturating_sub(t.max(st.last_rx_ns)) >= drain);
            if all_in || gave_up {
                reported = true;
                emit(Event::Result(Box::new(ResultReport {
                    received: st.marked,
                    sent: sender.as_ref().map_or(0, |s| s.sent),
                    refused: st.refused,
                    first_tx_ns: sender.as_ref().map_or(0, |s| s.first_send_ns),
                    other: st.other,
                    dropped: st.dropped,
                    open: subs.open_now(),
                    latency: st.latency.to_wire(),
                    first_rx_ns: st.first_rx_ns,
                    last_rx_ns: st.last_rx_ns,
                    pings: st.pings,
                    bytes_in: st.bytes_in,
                    cpu_s: cpu() - cpu_go,
                    errors: st.errors.clone(),
                })));
            }
        }
    }
}

pub(crate) fn bind_pool(bind: &BindSpec, ids: Vec<String>) -> Pool {
    let head = format!(
        "POST /api/bind_to_group HTTP/1.1\r\nHost: {}\r\nSystemId: {}\r\n\
         Content-Type: application/json\r\n",
        bind.host, bind.system
    );
    let group = serde_json::to_string(&bind.group).unwrap_or_else(|_| "\"bench\"".into());
    let total = ids.len() as u64;
    let make = Box::new(move |i: u64, _now: u64, out: &mut Vec<u8>| {
        let id = ids.get(i as usize).map(String::as_str).unwrap_or("");
        let body = format!("{{\"clientId\":\"{id}\",\"groupName\":{group}}}");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body.as_bytes());
    });
    Pool::new(
        PoolConfig {
            dst: bind.api,
            src: bind.src,
            connections: 2,
            depth: 32,
            total,
            rate: None,
            token_base: POOL_TOKENS,
            fresh: false,
        },
        make,
        Box::new(|status, body| status == 200 && crate::api::code_is_zero(body)),
    )
}
