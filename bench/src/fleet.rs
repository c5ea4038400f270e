//! The workers of a run, from the parent: starting them, sending commands, collecting
//! their events (`ipc`'s types). Worker 0 runs on a thread of the parent; the others are
//! child processes of the same executable (hidden `__worker` subcommand) with their own
//! open-file limit. Commands and events are JSON lines: the spec and then commands on
//! the child's stdin, events on its stdout. A child exits when its stdin closes or its
//! parent dies.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::ipc::{Cmd, Event, ReadyReport, ResultReport, WorkerSpec};
use crate::worker;

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
