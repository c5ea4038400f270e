//! A worker of a `resume` run: opens its share of the connections (each welcome must
//! carry a resume token), binds them to a group if asked, reports ready (that setup is
//! `setup`'s, shared with the other workers); on Drop waits until every connection
//! processed the awaited push and resets them all; on Resume reconnects them all with
//! their tokens and reports how each reconnect went.

use crate::clock::mono_ns;
use crate::ipc::{Cmd, DropReport, Event, ResumeReport, WorkerSpec};
use crate::resume_conns::{parse_id, ConnsConfig, MsgId, ResumeConns};
use crate::setup::{self, next_cmd, Conns, Run};

/// The phases after the start (Connect came).
pub fn run_phases(
    spec: WorkerSpec,
    mut run: Run,
    emit: &mut dyn FnMut(Event),
) -> anyhow::Result<()> {
    let rs = spec.resume.clone().unwrap_or(crate::ipc::ResumeSpec {
        concurrency: 0,
        timeout_ms: 60_000,
    });
    let mut conns = ResumeConns::new(ConnsConfig {
        dial: setup::dial(&spec),
        resume_concurrency: rs.concurrency,
    });
    let Some(ready) = run.open(&spec, &mut conns)? else {
        return Ok(());
    };
    emit(Event::Ready(Box::new(ready)));

    // Hold until Drop, then until Resume; stay open afterwards until Close.
    let setup_other = conns.connect.other;
    loop {
        run.turn(&mut conns, 20)?;
        let Ok(cmd) = next_cmd(&run.cmds) else {
            conns.close_all();
            return Ok(());
        };
        match cmd {
            Some(Cmd::Drop { wait_for, wait_ms }) => {
                let want: Option<MsgId> = wait_for.as_deref().and_then(parse_id);
                let deadline = mono_ns() + wait_ms * 1_000_000;
                if let Some(id) = &want {
                    while conns.missing(id) > 0 && mono_ns() < deadline {
                        run.turn(&mut conns, 20)?;
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
                let cpu0 = run.cpu();
                conns.begin_resume(ids);
                let deadline = mono_ns() + rs.timeout_ms * 1_000_000;
                loop {
                    conns.start_more(&run.poller, mono_ns());
                    if conns.all_resolved() {
                        break;
                    }
                    if mono_ns() >= deadline {
                        conns.expire();
                        break;
                    }
                    run.turn(&mut conns, 20)?;
                    if next_cmd(&run.cmds).is_err() {
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
                    cpu_s: run.cpu() - cpu0,
                    errors: r.errors.clone(),
                })));
            }
            _ => {}
        }
    }
}
