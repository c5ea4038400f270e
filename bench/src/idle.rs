//! `idle`: open N WebSocket connections, wait for each one's welcome (or 101), and
//! report the connect rate, the handshake latency and the server's memory per idle
//! connection ((VmRSS after − before) / N); with `--traffic`, push to them and report
//! the server's memory growth per connection after it (`traffic`); hold them, then
//! close.

use std::time::Duration;

use serde_json::json;

use crate::cli::{IdleArgs, Mode};
use crate::clock::{mono_ns, secs_between};
use crate::fleet::Fleet;
use crate::histogram::Histogram;
use crate::ipc::{Cmd, Event};
use crate::plan::Plan;
use crate::procstat::{rss_growth, self_cpu};
use crate::report::{self, Out};
use crate::traffic;
use crate::url::Url;

pub fn run(a: IdleArgs, out: &Out) -> anyhow::Result<()> {
    let url = Url::parse(&a.url, false)?;
    let server = a.conns.server();
    server.check().map_err(anyhow::Error::msg)?;
    let specs = Plan {
        url: &url,
        conns: &a.conns,
        total: a.connections,
        want_welcome: !a.no_welcome,
        capture_ids: a.traffic.is_some_and(|t| t.mode == Mode::Client),
        bind: None,
        chat: None,
        drain_timeout_ms: if a.traffic.is_some() {
            traffic::DRAIN_MS
        } else {
            0
        },
        quiet_ms: 0,
        resume: None,
    }
    .specs()?;
    let procs = specs.len();
    let fleet = Fleet::start(specs)?;

    let before = server.sample();
    let cpu0 = self_cpu();
    let t0 = mono_ns();
    let readies = fleet.connect("connections", Duration::from_secs(a.conns.setup_timeout))?;
    let t1 = mono_ns();
    let tool_cpu = self_cpu() - cpu0 + readies.iter().map(|r| r.cpu_s).sum::<f64>();
    let mid = server.sample();
    std::thread::sleep(Duration::from_millis(a.settle));
    let after = server.sample();

    let mut handshake = Histogram::new();
    let (mut opened, mut failed, mut deflate_agreed) = (0, 0, 0);
    let (mut first, mut last) = (u64::MAX, 0);
    let mut errors = Vec::new();
    for r in &readies {
        opened += r.opened;
        failed += r.failed;
        deflate_agreed += r.deflate_agreed;
        handshake.merge(&Histogram::from_wire(&r.handshake));
        if r.first_start_ns != 0 {
            first = first.min(r.first_start_ns);
        }
        last = last.max(r.last_ready_ns);
        report::merge_errors(&mut errors, &r.errors);
    }
    let (connect_secs, rate) = crate::clock::rate(opened, first, last);
    let hs = handshake.summary_us();
    let per_conn = rss_growth(before, after, opened);
    let wall = secs_between(t0, t1);
    let server_cpu = match (before, mid) {
        (Some(b), Some(m)) => Some(m.cpu_s - b.cpu_s),
        _ => None,
    };

    if !out.json {
        println!(
            "idle: {} connections to {} from {procs} process(es)",
            report::int(a.connections as u64),
            a.url
        );
        println!(
            "  connected   {} ({} failed) in {connect_secs:.2} s = {} conn/s",
            report::int(opened),
            report::int(failed),
            report::rate(rate)
        );
        println!(
            "  handshake   {}   (connect start → {})",
            report::percentiles(&hs),
            if a.no_welcome { "101" } else { "first frame" }
        );
        if a.conns.deflate.is_some() {
            println!(
                "  deflate     permessage-deflate agreed on {} of {} connections",
                report::int(deflate_agreed),
                report::int(opened)
            );
        }
        if let (Some(b), Some(af), Some(pc)) = (before, after, per_conn) {
            println!(
                "  server RSS  {} → {} ({} process(es)): {} per connection",
                report::bytes(b.rss as f64),
                report::bytes(af.rss as f64),
                af.processes,
                report::bytes(pc)
            );
        }
        print!("  cpu         tool {}", report::cpu(tool_cpu, wall));
        match server_cpu {
            Some(s) => println!(", server {}", report::cpu(s, wall)),
            None => println!(),
        }
        report::print_errors(&errors);
    }
    let traffic = match a.traffic {
        Some(t) if opened > 0 => {
            let mut r = traffic::run(&fleet, &readies, t, &url, &a.conns, a.after_ms)?;
            r.read_metrics(&url);
            if !out.json {
                r.print();
            }
            Some(r)
        }
        _ => None,
    };
    if a.hold > 0.0 {
        if !out.json {
            println!(
                "  holding {} connections for {} s",
                report::int(opened),
                a.hold
            );
        }
        std::thread::sleep(Duration::from_secs_f64(a.hold));
    }
    // How the connections fared meanwhile: a Go expecting nothing makes every worker
    // report at once.
    fleet.broadcast(Cmd::Go { expected: 0 });
    fleet.collect("armed", Duration::from_secs(30), |ev| match ev {
        Event::Armed => Some(()),
        _ => None,
    })?;
    let status = fleet.collect("status", Duration::from_secs(30), |ev| match ev {
        Event::Result(r) => Some(r),
        _ => None,
    })?;
    let still_open: u64 = status.iter().map(|r| r.open).sum();
    let pings: u64 = status.iter().map(|r| r.pings).sum();
    let mut hold_errors = Vec::new();
    for r in &status {
        report::merge_errors(&mut hold_errors, &r.errors);
    }
    if (a.hold > 0.0 || traffic.is_some()) && !out.json {
        println!(
            "  {:<11} {} still open, {} pings answered",
            if a.hold > 0.0 {
                "after hold"
            } else {
                "at the end"
            },
            report::int(still_open),
            report::int(pings)
        );
        if !hold_errors.is_empty() {
            print!("{}", report::error_lines(&hold_errors));
        }
    }
    let end = server.sample();
    fleet.shutdown();

    if out.json {
        let v = json!({
            "kind": "idle",
            "url": a.url,
            "procs": procs,
            "connections": a.connections,
            "opened": opened,
            "failed": failed,
            "connect_secs": connect_secs,
            "connect_rate": rate,
            "handshake_us": hs,
            "deflate_offer": a.conns.deflate,
            "deflate_agreed": a.conns.deflate.as_ref().map(|_| deflate_agreed),
            "server_rss_before": before.map(|s| s.rss),
            "server_rss_after": after.map(|s| s.rss),
            "server_rss_end_of_hold": end.map(|s| s.rss),
            "hold_s": a.hold,
            "open_after_hold": still_open,
            "pings_answered": pings,
            "hold_errors": hold_errors,
            "server_processes": after.map(|s| s.processes),
            "bytes_per_connection": per_conn,
            "traffic": traffic,
            "tool_cpu_s": tool_cpu,
            "server_cpu_s": server_cpu,
            "wall_s": wall,
            "errors": errors,
        });
        out.emit(v);
    }
    if opened == 0 {
        anyhow::bail!("no connection could be opened");
    }
    Ok(())
}
