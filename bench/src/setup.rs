//! What both kinds of worker do before their own phases (`worker`: fanout, idle, chat;
//! `resume_worker`: resume): report the start, wait for Connect, open the connections,
//! bind them to a group when asked (shardcast group mode; their frames are read
//! meanwhile), let the setup traffic (welcome stragglers, online notices) die down and
//! make the ready report. The two differ only in their connection sets, handed over as
//! [`Conns`]. A Close, or a parent gone, stops a worker at any point.

use crate::clock::mono_ns;
use crate::envelope::code_is_zero;
use crate::histogram::Histogram;
use crate::http_client::{Pool, PoolConfig};
use crate::ipc::{BindSpec, Cmd, Event, ReadyReport, WorkerSpec};
use crate::poller::{Event as PollEvent, Poller};
use crate::procstat::self_cpu;
use crate::sock;
use crate::ws_client::Dial;

/// Epoll tokens at and above this belong to the bind pool.
const POOL_TOKENS: u64 = 1 << 40;

/// A worker's set of connections, as its run drives it.
pub(crate) trait Conns {
    /// Starts connections while the handshakes in progress allow.
    fn start_more(&mut self, poller: &Poller, now: u64);
    /// Every connection has been tried and is resolved.
    fn all_resolved(&self) -> bool;
    /// Handles one readiness event.
    fn handle(&mut self, poller: &Poller, token: u64, bits: u32);
    /// The clientIds to bind to the group.
    fn client_ids(&self) -> Vec<String>;
    /// Time of the last data frame.
    fn last_frame_ns(&self) -> u64;
    /// The error sample of the connect (the bind's errors join it).
    fn errors(&mut self) -> &mut Vec<(String, u64)>;
    /// The counts of the connect, as the ready report gives them.
    fn ready_report(&self) -> ReadyReport;
}

/// What a set of connections counted while opening, as the ready report gives it.
#[derive(Clone, Debug, Default)]
pub struct Opening {
    pub opened: u64,
    pub failed: u64,
    pub handshake: Histogram,
    pub first_start_ns: u64,
    pub last_ready_ns: u64,
    /// Connections whose 101 agreed to permessage-deflate.
    pub deflate_agreed: u64,
}

impl Opening {
    /// A connection starts at `now`.
    pub fn start(&mut self, now: u64) {
        if self.first_start_ns == 0 {
            self.first_start_ns = now;
        }
    }

    /// A connection started at `started_ns` is ready at `now`.
    pub fn ready(&mut self, started_ns: u64, now: u64) {
        self.opened += 1;
        self.handshake.record(now.saturating_sub(started_ns));
        self.last_ready_ns = self.last_ready_ns.max(now);
    }

    /// The ready report of these counts and the set's `setup_frames` and `errors`.
    pub fn report(&self, setup_frames: u64, errors: &[(String, u64)]) -> ReadyReport {
        ReadyReport {
            opened: self.opened,
            failed: self.failed,
            handshake: self.handshake.to_wire(),
            first_start_ns: self.first_start_ns,
            last_ready_ns: self.last_ready_ns,
            setup_frames,
            deflate_agreed: self.deflate_agreed,
            errors: errors.to_vec(),
            ..ReadyReport::default()
        }
    }
}

/// Where and how a worker's connections connect.
pub(crate) fn dial(spec: &WorkerSpec) -> Dial {
    Dial {
        dst: spec.dst,
        host: spec.host.clone(),
        path: spec.path.clone(),
        sources: spec.sources.clone(),
        count: spec.connections,
        concurrency: spec.concurrency.max(1),
        deflate: spec.deflate.clone(),
    }
}

/// The next command, if any; Err when the worker must stop (Close, or the parent gone).
pub(crate) fn next_cmd(cmds: &flume::Receiver<Cmd>) -> Result<Option<Cmd>, ()> {
    match cmds.try_recv() {
        Ok(Cmd::Close) | Err(flume::TryRecvError::Disconnected) => Err(()),
        Ok(cmd) => Ok(Some(cmd)),
        Err(flume::TryRecvError::Empty) => Ok(None),
    }
}

/// Takes the pending commands, `on` seeing each; Err when the worker must stop.
pub(crate) fn drain_cmds(cmds: &flume::Receiver<Cmd>, mut on: impl FnMut(Cmd)) -> Result<(), ()> {
    while let Some(cmd) = next_cmd(cmds)? {
        on(cmd);
    }
    Ok(())
}

/// A worker's loop: its epoll set, its commands, its CPU clock.
pub(crate) struct Run {
    pub poller: Poller,
    events: Vec<PollEvent>,
    pub cmds: flume::Receiver<Cmd>,
    is_child: bool,
    /// CPU seconds when Connect came.
    cpu_connect: f64,
}

impl Run {
    /// Reports the start, then waits for Connect; None when told to close first.
    pub fn start(
        spec: &WorkerSpec,
        cmds: flume::Receiver<Cmd>,
        emit: &mut dyn FnMut(Event),
    ) -> anyhow::Result<Option<Run>> {
        sock::raise_nofile();
        emit(Event::Started {
            pid: std::process::id(),
        });
        loop {
            match cmds.recv() {
                Ok(Cmd::Connect) => break,
                Ok(Cmd::Close) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
        let mut run = Run {
            poller: Poller::new()?,
            events: Vec::new(),
            cmds,
            is_child: spec.is_child,
            cpu_connect: 0.0,
        };
        run.cpu_connect = run.cpu();
        Ok(Some(run))
    }

    /// CPU seconds of this worker process (0 for the worker in the parent's process).
    pub fn cpu(&self) -> f64 {
        if self.is_child {
            self_cpu()
        } else {
            0.0
        }
    }

    /// Takes the pending commands; true when one of them (or the parent gone) stops
    /// the worker.
    fn told_to_stop(&self) -> bool {
        drain_cmds(&self.cmds, |_| {}).is_err()
    }

    /// Waits up to `ms` for readiness and hands the events to the connections.
    pub fn turn(&mut self, conns: &mut impl Conns, ms: i32) -> anyhow::Result<()> {
        self.poller.wait(&mut self.events, ms)?;
        for &(token, bits) in &self.events {
            conns.handle(&self.poller, token, bits);
        }
        Ok(())
    }

    /// Connects, binds if asked, lets the setup traffic die down; the ready report, or
    /// None when the worker must stop.
    pub fn open(
        &mut self,
        spec: &WorkerSpec,
        conns: &mut impl Conns,
    ) -> anyhow::Result<Option<ReadyReport>> {
        while !conns.all_resolved() {
            conns.start_more(&self.poller, mono_ns());
            self.turn(conns, 50)?;
            if self.told_to_stop() {
                return Ok(None);
            }
        }
        let (bind_requests, bind_failed) = match &spec.bind {
            Some(bind) => match self.bind(bind, conns)? {
                Some(counts) => counts,
                None => return Ok(None),
            },
            None => (0, 0),
        };
        let quiet = spec.quiet_ms * 1_000_000;
        let quiet_from = mono_ns();
        while mono_ns().saturating_sub(conns.last_frame_ns().max(quiet_from)) < quiet {
            self.turn(conns, 20)?;
            if self.told_to_stop() {
                return Ok(None);
            }
        }
        Ok(Some(ReadyReport {
            bind_requests,
            bind_failed,
            setup_done_ns: mono_ns(),
            cpu_s: self.cpu() - self.cpu_connect,
            ..conns.ready_report()
        }))
    }

    /// Binds the connections' clientIds to the group, reading their frames meanwhile
    /// (its errors join theirs); the requests and the failures, or None when the worker
    /// must stop.
    fn bind(
        &mut self,
        bind: &BindSpec,
        conns: &mut impl Conns,
    ) -> anyhow::Result<Option<(u64, u64)>> {
        let ids = conns.client_ids();
        if ids.is_empty() {
            return Ok(Some((0, 0)));
        }
        let requests = ids.len() as u64;
        let mut pool = bind_pool(bind, ids);
        pool.start(&self.poller);
        while !pool.done() {
            pool.pump(&self.poller, mono_ns());
            self.poller.wait(&mut self.events, 50)?;
            for &(token, bits) in &self.events {
                if pool.owns(token) {
                    pool.handle(&self.poller, token, bits);
                } else {
                    conns.handle(&self.poller, token, bits);
                }
            }
            if self.told_to_stop() {
                return Ok(None);
            }
        }
        for (e, n) in &pool.errors {
            conns.errors().push((format!("bind: {e}"), *n));
        }
        Ok(Some((requests, requests - pool.succeeded)))
    }
}

fn bind_pool(bind: &BindSpec, ids: Vec<String>) -> Pool {
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
        Box::new(|status, body| status == 200 && code_is_zero(body)),
    )
}
