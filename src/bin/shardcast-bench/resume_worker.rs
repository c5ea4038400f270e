//! A worker of a `resume` run: opens its share of the connections (each welcome must
//! carry a resume token), binds them to a group if asked, reports ready; on Drop waits
//! until every connection processed the awaited push and resets them all; on Resume
//! reconnects them all with their tokens and reports how each reconnect went.

use crate::clock::mono_ns;
use crate::ipc::{Cmd, DropReport, Event, ReadyReport, ResumeReport, WorkerSpec};
use crate::poller::{Event as PollEvent, Poller};
use crate::procstat::self_cpu;
use crate::resume_conns::{parse_id, ConnsConfig, MsgId, ResumeConns};
use crate::sock;
use crate::worker::bind_pool;

/// The next command, if any; Err when the worker must stop (Close, or the parent gone).
fn next_cmd(cmds: &flume::Receiver<Cmd>) -> Result<Option<Cmd>, ()> {
    match cmds.try_recv() {
        Ok(Cmd::Close) | Err(flume::TryRecvError::Disconnected) => Err(()),
        Ok(cmd) => Ok(Some(cmd)),
        Err(flume::TryRecvError::Empty) => Ok(None),
    }
}

/// Waits up to `ms` for readiness and hands the events to the connections.
fn turn(
    conns: &mut ResumeConns,
    poller: &mut Poller,
    events: &mut Vec<PollEvent>,
    ms: i32,
) -> anyhow::Result<()> {
    poller.wait(events, ms)?;
    for &(token, bits) in events.iter() {
        conns.handle(poller, token, bits);
    }
    Ok(())
}

pub fn run_phases(
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
    let rs = spec.resume.clone().unwrap_or(crate::ipc::ResumeSpec {
        concurrency: 0,
        timeout_ms: 60_000,
    });
    let cpu = || if spec.is_child { self_cpu() } else { 0.0 };
    let cpu_connect = cpu();
    let mut poller = Poller::new()?;
    let mut events: Vec<PollEvent> = Vec::new();
    let mut conns = ResumeConns::new(ConnsConfig {
        dst: spec.dst,
        host: spec.host.clone(),
        path: spec.path.clone(),
        sources: spec.sources.clone(),
        count: spec.connections,
        concurrency: spec.concurrency.max(1),
        resume_concurrency: rs.concurrency,
    });

    // Connect.
    while !conns.all_resolved() {
        conns.start_more(&poller, mono_ns());
        turn(&mut conns, &mut poller, &mut events, 50)?;
        if next_cmd(&cmds).is_err() {
            return Ok(());
        }
    }

    // Bind, reading the notices meanwhile.
    let (mut bind_requests, mut bind_failed) = (0, 0);
    if let Some(bind) = &spec.bind {
        let ids = conns.client_ids();
        if !ids.is_empty() {
            bind_requests = ids.len() as u64;
            let mut pool = bind_pool(bind, ids);
            pool.start(&poller);
            while !pool.done() {
                pool.pump(&poller, mono_ns());
                poller.wait(&mut events, 50)?;
                for &(token, bits) in &events {
                    if pool.owns(token) {
                        pool.handle(&poller, token, bits);
                    } else {
                        conns.handle(&poller, token, bits);
                    }
                }
                if next_cmd(&cmds).is_err() {
                    return Ok(());
                }
            }
            bind_failed = bind_requests - pool.succeeded;
            for (e, n) in &pool.errors {
                conns.connect.errors.push((format!("bind: {e}"), *n));
            }
        }
    }

    // Let the setup traffic (welcome stragglers, online notices) die down.
    let quiet = spec.quiet_ms * 1_000_000;
    let quiet_from = mono_ns();
    while mono_ns().saturating_sub(conns.connect.last_frame_ns.max(quiet_from)) < quiet {
        turn(&mut conns, &mut poller, &mut events, 20)?;
        if next_cmd(&cmds).is_err() {
            return Ok(());
        }
    }
    let st = &conns.connect;
    emit(Event::Ready(Box::new(ReadyReport {
        opened: st.opened,
        failed: st.failed,
        handshake: st.handshake.to_wire(),
        first_start_ns: st.first_start_ns,
        last_ready_ns: st.last_ready_ns,
        client_ids: Vec::new(),
        bind_requests,
        bind_failed,
        setup_frames: st.pushes + st.other,
        setup_done_ns: mono_ns(),
        cpu_s: cpu() - cpu_connect,
        errors: st.errors.clone(),
    })));

    // Hold until Drop, then until Resume; stay open afterwards until Close.
    let setup_other = conns.connect.other;
    loop {
        turn(&mut conns, &mut poller, &mut events, 20)?;
        let Ok(cmd) = next_cmd(&cmds) else {
            conns.close_all();
            return Ok(());
        };
        match cmd {
            Some(Cmd::Drop { wait_for, wait_ms }) => {
                let want: Option<MsgId> = wait_for.as_deref().and_then(parse_id);
                let deadline = mono_ns() + wait_ms * 1_000_000;
                if let Some(id) = &want {
                    while conns.missing(id) > 0 && mono_ns() < deadline {
                        turn(&mut conns, &mut poller, &mut events, 20)?;
                    }
                }
                let missed_before = want.as_ref().map_or(0, |id| conns.missing(id));
                let other_frames = conns.connect.other - setup_other;
                let dropped = conns.reset_all();
                emit(Event::Dropped(DropReport {
                    dropped,
                    missed_before,
                    other_frames,
                }));
            }
            Some(Cmd::Resume { ids }) => {
                let ids: Vec<MsgId> = ids.iter().filter_map(|s| parse_id(s)).collect();
                let cpu0 = cpu();
                conns.begin_resume(ids);
                let deadline = mono_ns() + rs.timeout_ms * 1_000_000;
                loop {
                    conns.start_more(&poller, mono_ns());
                    if conns.all_resolved() {
                        break;
                    }
                    if mono_ns() >= deadline {
                        conns.expire();
                        break;
                    }
                    turn(&mut conns, &mut poller, &mut events, 20)?;
                    if next_cmd(&cmds).is_err() {
                        conns.close_all();
                        return Ok(());
                    }
                }
                let r = &conns.resume;
                emit(Event::Resumed(Box::new(ResumeReport {
                    attempted: r.attempted,
                    completed: r.completed,
                    failed: r.failed,
                    resumed: r.resumed,
                    same_id: r.same_id,
                    recovered: r.recovered,
                    frames: r.frames,
                    latency: r.latency.to_wire(),
                    welcome: r.welcome.to_wire(),
                    first_start_ns: r.first_start_ns,
                    last_start_ns: r.last_start_ns,
                    last_done_ns: r.last_done_ns,
                    cpu_s: cpu() - cpu0,
                    errors: r.errors.clone(),
                })));
            }
            _ => {}
        }
    }
}
