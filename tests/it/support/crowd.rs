//! A crowd of WebSocket clients that read nothing, held by a child process
//! (`crowd.py`, run by `python3`), for tests that need more sockets than the test
//! process can hold beside its neighbours (one open-file limit per process).
//!
//! Each socket gets a small receive buffer and a small segment size before it connects,
//! so that the node soon finds it full and the kernel holds little for it: Linux gives
//! the node's side a send buffer sized from the peer's segment size (megabytes on
//! loopback by default — ten thousand of those would use up the machine's TCP memory
//! before the node saw one of them full). After its welcome a socket is never read.
//!
//! With session resume on, the crowd can drop its connections (detached, not closed)
//! and resume them all later on new sockets: what is sent to a detached connection
//! costs the node nothing on the wire, so a test can bind ten thousand of them to one
//! group without the N²/2 online notices of a room filling up going through their
//! sockets. The process (group) is killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use super::node::Node;
use super::process::Group;

/// A crowd of WebSocket clients of one system, held by a `python3` child.
pub struct Crowd {
    /// The clientIds, in the order their welcomes came.
    pub ids: Vec<String>,
    child: Group,
    stdin: ChildStdin,
    /// What it prints, line by line.
    lines: Receiver<String>,
}

/// How long the crowd may take to open, drop or resume its clients.
const CROWD_WAIT: Duration = Duration::from_secs(60);

impl Crowd {
    /// Opens `count` WebSocket clients of `system` on `node`, each with `SO_RCVBUF` =
    /// `rcvbuf` and `TCP_MAXSEG` = `mss` set before connecting; returns once every one
    /// has its welcome.
    pub fn open(node: &Node, system: &str, count: usize, rcvbuf: usize, mss: usize) -> Crowd {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/crowd.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(node.addr())
            .arg(system)
            .arg(count.to_string())
            .arg(rcvbuf.to_string())
            .arg(mss.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // A process group: `python3` may be a wrapper (pyenv) that runs the interpreter
        // as a child.
        let mut child = Group::spawn(&mut cmd).expect("run python3 (crowd.py)");
        let stdin = child.0.stdin.take().expect("crowd stdin");
        let stdout = BufReader::new(child.0.stdout.take().expect("crowd stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut crowd = Crowd {
            ids: Vec::with_capacity(count),
            child,
            stdin,
            lines,
        };
        loop {
            let line = crowd.line("its welcomes");
            if line == "ready" {
                break;
            }
            let id = line
                .strip_prefix("id ")
                .unwrap_or_else(|| panic!("crowd.py said {line:?}"));
            crowd.ids.push(id.to_string());
        }
        assert_eq!(crowd.ids.len(), count, "welcomes of the crowd");
        crowd
    }

    /// Resets every connection of the crowd (no close frame): with session resume on,
    /// the node detaches them.
    pub fn drop_all(&mut self) {
        self.command("drop", "dropped");
    }

    /// Resumes every dropped session on a new socket (made as in `open`), telling the
    /// node that `last` is the newest frame each got; returns once each welcome said
    /// `"resumed":true`.
    pub fn resume_all(&mut self, last: &str) {
        self.command(&format!("resume {last}"), "resumed");
    }

    fn command(&mut self, command: &str, answer: &str) {
        writeln!(self.stdin, "{command}").expect("write to crowd.py");
        self.stdin.flush().expect("write to crowd.py");
        let line = self.line(answer);
        assert_eq!(line, answer, "crowd.py said {line:?} to {command:?}");
    }

    /// The next line the crowd prints; panics, naming `waiting_for`, when it exits or
    /// says nothing for `CROWD_WAIT`.
    fn line(&mut self, waiting_for: &str) -> String {
        match self.lines.recv_timeout(CROWD_WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("crowd.py: no {waiting_for} within {CROWD_WAIT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.0.wait().map(|s| s.to_string());
                panic!("crowd.py ended before {waiting_for} ({status:?})");
            }
        }
    }
}
