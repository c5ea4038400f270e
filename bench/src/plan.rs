//! How a run's connections are spread over worker processes and source addresses.

use std::net::Ipv4Addr;

use anyhow::bail;

use crate::cli::ConnArgs;
use crate::ipc::{BindSpec, ChatSpec, ResumeSpec, WorkerSpec};
use crate::sock;
use crate::url::Url;

/// What every worker of a run shares.
pub struct Plan<'a> {
    pub url: &'a Url,
    pub conns: &'a ConnArgs,
    pub total: usize,
    pub want_welcome: bool,
    pub capture_ids: bool,
    pub bind: Option<BindSpec>,
    /// `chat`: what the clients send; its rate is for all of them (each worker gets its
    /// share).
    pub chat: Option<ChatSpec>,
    pub drain_timeout_ms: u64,
    pub quiet_ms: u64,
    /// `resume`: how the dropped connections come back.
    pub resume: Option<ResumeSpec>,
}

impl Plan<'_> {
    /// One spec per worker process: worker 0 runs in this process.
    pub fn specs(&self) -> anyhow::Result<Vec<WorkerSpec>> {
        let per_proc = sock::connections_per_process();
        let needed = self.total.div_ceil(per_proc).max(1);
        let procs = self.conns.procs.unwrap_or(needed).max(1);
        if self.total.div_ceil(procs) > per_proc {
            bail!(
                "{} connections over {procs} process(es) exceed the open-file limit \
                 ({per_proc} per process): use --procs {needed} or more",
                self.total
            );
        }
        let all_sources: Vec<Ipv4Addr> =
            crate::sources::parse(&self.conns.sources, self.url.is_loopback())?;
        let (base, extra) = (self.total / procs, self.total % procs);
        Ok((0..procs)
            .map(|i| {
                let connections = base + usize::from(i < extra);
                let share = connections as f64 / self.total.max(1) as f64;
                WorkerSpec {
                    index: i,
                    is_child: i > 0,
                    dst: self.url.addr,
                    host: self.url.authority.clone(),
                    path: self.url.path.clone(),
                    sources: crate::sources::share(&all_sources, i, procs),
                    connections,
                    concurrency: self.conns.concurrency,
                    want_welcome: self.want_welcome,
                    capture_ids: self.capture_ids,
                    bind: self.bind.clone().map(|mut b| {
                        b.src = crate::sources::share(&all_sources, i, procs)
                            .first()
                            .copied();
                        b
                    }),
                    chat: self.chat.clone().map(|mut c| {
                        c.rate = c.rate.map(|r| r * share);
                        c
                    }),
                    drain_timeout_ms: self.drain_timeout_ms,
                    quiet_ms: self.quiet_ms,
                    resume: self.resume.clone(),
                    receive_log: self.conns.receive_log.clone(),
                    deflate: self.conns.deflate.clone(),
                }
            })
            .collect())
    }
}
