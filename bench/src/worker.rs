//! One worker: its share of subscriber connections on one epoll thread, through the
//! phases a parent drives — connect (and, in shardcast group mode, bind to the group
//! and let the online notices die down; this setup is `setup`'s, shared with the
//! workers of `resume`), report ready, count marked messages from Go until all
//! expected arrived or the drain timeout passed, report, close. In a `chat` run the
//! worker is its own publisher: from Go its connections send client messages for the
//! run's duration, and the marked frames it counts are their acks.

use crate::clock::mono_ns;
use crate::ipc::{Cmd, Event, ResultReport, WorkerSpec};
use crate::receive_log::ReceiveLog;
use crate::sender::Sender;
use crate::setup::{self, drain_cmds, Run};
use crate::subscriber::{SubConfig, Subscribers};

pub fn run(spec: WorkerSpec, cmds: flume::Receiver<Cmd>, emit: &mut dyn FnMut(Event)) {
    let r = Run::start(&spec, cmds, emit).and_then(|run| match run {
        Some(run) if spec.resume.is_some() => crate::resume_worker::run_phases(spec, run, emit),
        Some(run) => run_phases(spec, run, emit),
        None => Ok(()),
    });
    if let Err(e) = r {
        emit(Event::Error {
            message: format!("{e:#}"),
        });
    }
}

fn run_phases(spec: WorkerSpec, mut run: Run, emit: &mut dyn FnMut(Event)) -> anyhow::Result<()> {
    let mut subs = Subscribers::new(SubConfig {
        dial: setup::dial(&spec),
        want_welcome: spec.want_welcome,
        capture_ids: spec.capture_ids || spec.bind.is_some(),
        acks: spec.chat.is_some(),
    });
    subs.receive_log = spec
        .receive_log
        .as_deref()
        .map(|path| ReceiveLog::new(path, spec.index));
    let Some(mut ready) = run.open(&spec, &mut subs)? else {
        return Ok(());
    };
    if spec.capture_ids {
        ready.client_ids = std::mem::take(&mut subs.client_ids);
    }
    emit(Event::Ready(Box::new(ready)));
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
        run.turn(&mut subs, 20)?;
        let next = drain_cmds(&run.cmds, |cmd| match cmd {
            Cmd::Go { expected: e } => {
                // A Go after a report (`idle --traffic`'s status pass) asks for another.
                reported = false;
                cpu_go = run.cpu();
                match &spec.chat {
                    Some(chat) => sender = Some(Sender::new(chat.clone(), mono_ns())),
                    None => expected = Some(e),
                }
                emit(Event::Armed);
            }
            Cmd::PublishDone => publish_done = Some(mono_ns()),
            Cmd::Connect | Cmd::Close | Cmd::Drop { .. } | Cmd::Resume { .. } => {}
        });
        if next.is_err() {
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
                s.pump(&mut subs, &run.poller, acked, now);
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
                let mut errors = st.errors.clone();
                if let Err(e) = subs.receive_log.as_ref().map_or(Ok(()), ReceiveLog::write) {
                    errors.push((format!("writing the receive log: {e}"), 1));
                }
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
                    wire_bytes: st.wire_bytes,
                    compressed: st.compressed,
                    cpu_s: run.cpu() - cpu_go,
                    errors,
                })));
            }
        }
    }
}
