//! Parent ↔ worker coordination. Worker 0 runs on a thread of the parent; the others are
//! child processes of the same executable (hidden `__worker` subcommand) with their own
//! open-file limit. Commands and events are JSON lines: the spec and then commands on
//! the child's stdin, events on its stdout. A child exits when its stdin closes or its
//! parent dies.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::histogram::HistogramWire;
use crate::worker;

/// What one worker does: its share of the subscriber connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub index: usize,
    pub is_child: bool,
    pub dst: SocketAddrV4,
    pub host: String,
    pub path: String,
    pub sources: Vec<Ipv4Addr>,
    pub connections: usize,
    pub concurrency: usize,
    pub want_welcome: bool,
    pub capture_ids: bool,
    /// shardcast group mode: bind every connection to a group before reporting ready.
    pub bind: Option<BindSpec>,
    /// `chat`: from Go, the connections send client messages and count their acks.
    pub chat: Option<ChatSpec>,
    /// After the publisher is done: give up when no message came for this long.
    pub drain_timeout_ms: u64,
    /// Before reporting ready: wait until no frame came for this long.
    pub quiet_ms: u64,
    /// `resume`: the connections are dropped and resumed on command.
    #[serde(default)]
    pub resume: Option<ResumeSpec>,
    /// `--receive-log`: where this worker writes what it received (`PATH.index`).
    #[serde(default)]
    pub receive_log: Option<String>,
}

/// How a worker of a `resume` run reconnects.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResumeSpec {
    /// Reconnects in progress at once (0: all at once).
    pub concurrency: usize,
    /// A reconnect not complete after this long is a failure.
    pub timeout_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BindSpec {
    pub api: SocketAddrV4,
    pub host: String,
    pub system: String,
    pub group: String,
    pub src: Option<Ipv4Addr>,
}

/// What a worker's connections send in a `chat` run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChatSpec {
    /// The message text before and after the send-time marker (inside its `reqId`,
    /// which the ack echoes).
    pub head: String,
    pub tail: String,
    /// Messages awaiting their ack, per connection on average.
    pub window: usize,
    /// Messages per second of this worker; None: as fast as the acks allow.
    pub rate: Option<f64>,
    /// How long to send.
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Cmd {
    /// Open the connections.
    Connect,
    /// Start counting: `expected` marked messages should arrive here.
    Go { expected: u64 },
    /// The publisher has had every answer.
    PublishDone,
    /// `resume`: once every connection has processed the push `wait_for` (or after
    /// `wait_ms`), drop them all with a TCP reset.
    Drop {
        wait_for: Option<String>,
        wait_ms: u64,
    },
    /// `resume`: reconnect every dropped connection with its resume token; `ids` are
    /// the messageIds of every push sent since the connections opened, in order.
    Resume { ids: Vec<String> },
    /// Close everything and exit.
    Close,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    Started {
        pid: u32,
    },
    Ready(Box<ReadyReport>),
    /// Go was received: counting toward the expected number.
    Armed,
    Result(Box<ResultReport>),
    /// `resume`: the connections were dropped.
    Dropped(DropReport),
    /// `resume`: every reconnect completed, failed or timed out.
    Resumed(Box<ResumeReport>),
    Error {
        message: String,
    },
    Exited,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadyReport {
    pub opened: u64,
    pub failed: u64,
    pub handshake: HistogramWire,
    pub first_start_ns: u64,
    pub last_ready_ns: u64,
    pub client_ids: Vec<String>,
    pub bind_requests: u64,
    pub bind_failed: u64,
    /// Frames received during setup (online notices of bind).
    pub setup_frames: u64,
    pub setup_done_ns: u64,
    /// CPU seconds of the child process since Connect (0 for the in-process worker).
    pub cpu_s: f64,
    pub errors: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResultReport {
    /// Marked frames received (in a `chat` run: acks).
    pub received: u64,
    /// `chat`: client messages sent.
    pub sent: u64,
    /// `chat`: acks whose code is not 0.
    pub refused: u64,
    /// `chat`: when the first message was sent.
    pub first_tx_ns: u64,
    pub other: u64,
    pub dropped: u64,
    pub open: u64,
    pub latency: HistogramWire,
    pub first_rx_ns: u64,
    pub last_rx_ns: u64,
    pub pings: u64,
    pub bytes_in: u64,
    /// CPU seconds of the child process since Go (0 for the in-process worker).
    pub cpu_s: f64,
    pub errors: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DropReport {
    /// Connections reset.
    pub dropped: u64,
    /// Of those, how many had not processed the awaited push.
    pub missed_before: u64,
    /// Frames other than the awaited pushes seen before the drop (notices).
    pub other_frames: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResumeReport {
    /// Reconnects started.
    pub attempted: u64,
    /// Welcomed with `resumed:true`, the same clientId, `recovered:true`, and every
    /// missed frame received in order.
    pub completed: u64,
    pub failed: u64,
    /// Welcome checks, whatever came after.
    pub resumed: u64,
    pub same_id: u64,
    pub recovered: u64,
    /// Frames received after the welcomes.
    pub frames: u64,
    /// Reconnect start → welcome and every missed frame, of the completed ones.
    pub latency: HistogramWire,
    /// Reconnect start → welcome, of every welcomed one.
    pub welcome: HistogramWire,
    pub first_start_ns: u64,
    pub last_start_ns: u64,
    pub last_done_ns: u64,
    /// CPU seconds of the child process since Resume (0 for the in-process worker).
    pub cpu_s: f64,
    pub errors: Vec<(String, u64)>,
}

struct WorkerHandle {
    cmds: flume::Sender<Cmd>,
    events: flume::Receiver<Event>,
    child: Option<Child>,
    threads: Vec<JoinHandle<()>>,
}

/// The setup reports of every worker and their totals.
pub struct Connected {
    pub readies: Vec<ReadyReport>,
    pub opened: u64,
    pub failed: u64,
    pub errors: Vec<(String, u64)>,
}

/// All the workers of a run.
pub struct Fleet {
    workers: Vec<WorkerHandle>,
}

impl Fleet {
    /// Starts the workers and waits until every one has reported in.
    pub fn start(specs: Vec<WorkerSpec>) -> anyhow::Result<Fleet> {
        let fleet = Fleet::spawn(specs)?;
        fleet.collect("start", std::time::Duration::from_secs(30), |ev| match ev {
            Event::Started { pid } => Some(pid),
            _ => None,
        })?;
        Ok(fleet)
    }

    /// Starts worker 0 in this process and the others as children.
    fn spawn(specs: Vec<WorkerSpec>) -> anyhow::Result<Fleet> {
        let mut workers = Vec::new();
        for spec in specs {
            workers.push(if spec.is_child {
                spawn_child(spec)?
            } else {
                spawn_local(spec)
            });
        }
        Ok(Fleet { workers })
    }

    pub fn send(&self, i: usize, cmd: Cmd) {
        if let Some(w) = self.workers.get(i) {
            let _ = w.cmds.send(cmd);
        }
    }

    pub fn broadcast(&self, cmd: Cmd) {
        for w in &self.workers {
            let _ = w.cmds.send(cmd.clone());
        }
    }

    /// Tells every worker to open its connections and waits for their reports.
    pub fn connect(&self, what: &str, timeout: Duration) -> anyhow::Result<Vec<ReadyReport>> {
        self.broadcast(Cmd::Connect);
        self.collect(what, timeout, |ev| match ev {
            Event::Ready(r) => Some(*r),
            _ => None,
        })
    }

    /// Waits (at most `timeout`) for every worker's final report.
    pub fn results(&self, timeout: Duration) -> anyhow::Result<Vec<ResultReport>> {
        self.collect("results", timeout, |ev| match ev {
            Event::Result(r) => Some(*r),
            _ => None,
        })
    }

    /// Like `connect`, with the workers' counts summed; an error when no
    /// connection opened at all (`target` names where to).
    pub fn connect_all(
        &self,
        what: &str,
        timeout: Duration,
        target: &str,
    ) -> anyhow::Result<Connected> {
        let readies = self.connect(what, timeout)?;
        let opened: u64 = readies.iter().map(|r| r.opened).sum();
        let failed: u64 = readies.iter().map(|r| r.failed).sum();
        let mut errors = Vec::new();
        for r in &readies {
            crate::report::merge_errors(&mut errors, &r.errors);
        }
        if opened == 0 {
            bail!(
                "no {what} could connect to {target}:\n{}",
                crate::report::error_lines(&errors)
            );
        }
        Ok(Connected {
            readies,
            opened,
            failed,
            errors,
        })
    }

    /// Waits for one event accepted by `pick` from every worker (others are skipped).
    pub fn collect<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(Event) -> Option<T>,
    ) -> anyhow::Result<Vec<T>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            loop {
                let ev = w
                    .events
                    .recv_deadline(deadline)
                    .map_err(|_| anyhow!("worker {i}: no {what} within {timeout:?}"))?;
                match ev {
                    Event::Error { message } => bail!("worker {i}: {message}"),
                    Event::Exited => bail!("worker {i} exited before {what}"),
                    ev => {
                        if let Some(t) = pick(ev) {
                            out.push(t);
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Tells every worker to close and waits for them (children: at most 10 s, then killed).
    pub fn shutdown(mut self) {
        self.broadcast(Cmd::Close);
        self.reap(Duration::from_secs(10));
    }

    fn reap(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for w in &mut self.workers {
            let _ = w.events.recv_deadline(deadline);
            if let Some(child) = w.child.as_mut() {
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() >= deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
            w.child = None;
            for t in w.threads.drain(..) {
                if t.is_finished() {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.cmds.send(Cmd::Close);
            if let Some(mut child) = w.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn spawn_local(spec: WorkerSpec) -> WorkerHandle {
    let (cmd_tx, cmd_rx) = flume::unbounded();
    let (ev_tx, ev_rx) = flume::unbounded();
    let t = std::thread::spawn(move || {
        worker::run(spec, cmd_rx, &mut |ev| {
            let _ = ev_tx.send(ev);
        });
        let _ = ev_tx.send(Event::Exited);
    });
    WorkerHandle {
        cmds: cmd_tx,
        events: ev_rx,
        child: None,
        threads: vec![t],
    }
}

fn spawn_child(spec: WorkerSpec) -> anyhow::Result<WorkerHandle> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = Command::new(exe)
        .arg("__worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start a worker process")?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no worker stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no worker stdout"))?;
    writeln!(stdin, "{}", serde_json::to_string(&spec)?)?;
    stdin.flush()?;
    let (cmd_tx, cmd_rx) = flume::unbounded::<Cmd>();
    let (ev_tx, ev_rx) = flume::unbounded();
    let writer = std::thread::spawn(move || {
        for cmd in cmd_rx.iter() {
            let Ok(line) = serde_json::to_string(&cmd) else {
                continue;
            };
            if writeln!(stdin, "{line}")
                .and_then(|_| stdin.flush())
                .is_err()
            {
                break;
            }
            if matches!(cmd, Cmd::Close) {
                break;
            }
        }
    });
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Event>(&line) {
                Ok(ev) => {
                    let _ = ev_tx.send(ev);
                }
                Err(e) => {
                    let _ = ev_tx.send(Event::Error {
                        message: format!("bad worker output {line:?}: {e}"),
                    });
                }
            }
        }
        let _ = ev_tx.send(Event::Exited);
    });
    Ok(WorkerHandle {
        cmds: cmd_tx,
        events: ev_rx,
        child: Some(child),
        threads: vec![writer, reader],
    })
}

/// The hidden `__worker` subcommand: spec on the first stdin line, then commands.
pub fn child_main() -> anyhow::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal for this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mut stdin = std::io::stdin().lock();
    let mut first = String::new();
    stdin.read_line(&mut first)?;
    let spec: WorkerSpec = serde_json::from_str(&first).context("bad worker spec")?;
    drop(stdin);
    let (tx, rx) = flume::unbounded();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if let Ok(cmd) = serde_json::from_str::<Cmd>(&line) {
                if tx.send(cmd).is_err() {
                    break;
                }
            }
        }
    });
    let mut out = std::io::stdout().lock();
    worker::run(spec, rx, &mut |ev| {
        if let Ok(line) = serde_json::to_string(&ev) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    });
    Ok(())
}
