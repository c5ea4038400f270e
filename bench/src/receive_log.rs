//! `--receive-log PATH`: one line per marked frame a subscriber received — its send
//! time, its receive time (both CLOCK_MONOTONIC nanoseconds) and the connection's index
//! in its worker — written when the worker reports, to `PATH.N` for worker N.
//!
//! What a latency histogram cannot show: when each connection was written to. The gaps
//! between one connection's receives are the server's passes over its connections, so
//! the log tells which connections (which server cores) wait longest and why a p99 is
//! what it is (`scripts/receive_log.py` summarises it).

use std::io::{self, BufWriter, Write};

pub struct ReceiveLog {
    path: String,
    rows: Vec<(u64, u64, u32)>,
}

impl ReceiveLog {
    pub fn new(path: &str, worker: usize) -> ReceiveLog {
        ReceiveLog {
            path: format!("{path}.{worker}"),
            rows: Vec::with_capacity(1 << 20),
        }
    }

    pub fn record(&mut self, sent_ns: u64, received_ns: u64, conn: usize) {
        self.rows.push((sent_ns, received_ns, conn as u32));
    }

    pub fn write(&self) -> io::Result<()> {
        let mut out = BufWriter::new(std::fs::File::create(&self.path)?);
        for (sent, received, conn) in &self.rows {
            writeln!(out, "{sent} {received} {conn}")?;
        }
        out.flush()
    }
}
