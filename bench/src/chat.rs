//! `chat`: N WebSocket clients send client messages (docs/api.md §2.1) for a while, together
//! keeping window × N of them awaiting their ack (optionally paced); reports the send
//! and ack rates (code 0 and refused), the send → ack latency, the CPU of both sides,
//! and how chosen series of the server's metrics page moved over the steady part of
//! the run — under `ws.client_send = "webhook"`, the webhook deliveries and drops.

use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::cli::ChatArgs;
use crate::clock::{mono_ns, secs_between};
use crate::fleet::{Connected, Fleet};
use crate::histogram::Histogram;
use crate::ipc::{ChatSpec, Cmd, Event};
use crate::metrics::{self, Change};
use crate::plan::Plan;
use crate::procstat::self_cpu;
use crate::report::{self, Out};
use crate::url::Url;

pub fn run(a: ChatArgs, out: &Out) -> anyhow::Result<()> {
    let url = Url::parse(&a.url, false)?;
    let metrics_url = match a.metrics.as_str() {
        "none" => None,
        "auto" => Some(Url::parse(
            &format!("http://{}/metrics", url.authority),
            true,
        )?),
        u => Some(Url::parse(u, true)?),
    };
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        bail!("--duration must be positive");
    }
    if metrics_url.is_some() && a.warmup >= a.duration {
        bail!("--warmup must be shorter than --duration (or use --metrics none)");
    }
    let server = a.conns.server();
    server.check().map_err(anyhow::Error::msg)?;
    let head = format!(
        "{{\"type\":\"send_to_group\",\"groupName\":{},\"data\":{},\"reqId\":\"",
        serde_json::to_string(&a.group)?,
        serde_json::to_string(&a.data)?
    );
    let duration_ms = (a.duration * 1000.0) as u64;
    let specs = Plan {
        url: &url,
        conns: &a.conns,
        total: a.clients,
        want_welcome: true,
        capture_ids: false,
        bind: None,
        chat: Some(ChatSpec {
            head,
            tail: "\"}".into(),
            window: a.window.max(1),
            rate: a.rate.per_sec(),
            duration_ms,
        }),
        drain_timeout_ms: a.drain_timeout,
        quiet_ms: 100,
        resume: None,
    }
    .specs()?;
    let procs = specs.len();
    let fleet = Fleet::start(specs)?;

    // Connect.
    let setup0 = mono_ns();
    let setup = Duration::from_secs(a.conns.setup_timeout);
    let Connected {
        opened,
        failed,
        mut errors,
        ..
    } = fleet.connect_all("client", setup, &a.url.to_string())?;
    let setup_secs = secs_between(setup0, mono_ns());

    // Send; read the metrics page when the window opens and when sending stops.
    let s0 = server.sample();
    let cpu0 = self_cpu();
    let go0 = mono_ns();
    fleet.broadcast(Cmd::Go { expected: 0 });
    fleet.collect("armed", Duration::from_secs(30), |ev| match ev {
        Event::Armed => Some(()),
        _ => None,
    })?;
    let metrics_window = match &metrics_url {
        Some(u) => match measure(u, go0, a.warmup, a.duration, &a.metric) {
            Ok(w) => Some(w),
            Err(e) => {
                report::merge_errors(&mut errors, &[(format!("{e:#}"), 1)]);
                None
            }
        },
        None => None,
    };
    let results = fleet.results(Duration::from_millis(
        duration_ms + a.drain_timeout + 120_000,
    ))?;
    let go1 = mono_ns();
    let s1 = server.sample();
    let tool_cpu = self_cpu() - cpu0 + results.iter().map(|r| r.cpu_s).sum::<f64>();
    fleet.shutdown();

    let mut latency = Histogram::new();
    let (mut sent, mut acked, mut refused, mut dropped) = (0, 0, 0, 0);
    let (mut first_tx, mut last_rx) = (u64::MAX, 0);
    for r in &results {
        sent += r.sent;
        acked += r.received;
        refused += r.refused;
        dropped += r.dropped;
        if r.first_tx_ns != 0 {
            first_tx = first_tx.min(r.first_tx_ns);
        }
        last_rx = last_rx.max(r.last_rx_ns);
        latency.merge(&Histogram::from_wire(&r.latency));
        report::merge_errors(&mut errors, &r.errors);
    }
    let ok = acked.saturating_sub(refused);
    let unanswered = sent.saturating_sub(acked);
    let send_rate = sent as f64 / a.duration;
    let (ack_secs, ack_rate) = crate::clock::rate(acked, first_tx, last_rx);
    let ok_rate = if ack_secs > 0.0 {
        ok as f64 / ack_secs
    } else {
        0.0
    };
    let lat = latency.summary_us();
    let wall = secs_between(go0, go1);
    let server_cpu = match (s0, s1) {
        (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
        _ => None,
    };
    let rate_text = match a.rate.per_sec() {
        Some(r) => format!("{} msg/s", report::rate(r)),
        None => "max".into(),
    };

    if out.json {
        let (window_secs, changes) = metrics_window.unzip();
        out.emit(json!({
            "kind": "chat",
            "url": a.url,
            "procs": procs,
            "clients": a.clients,
            "connected": opened,
            "connect_failed": failed,
            "setup_secs": setup_secs,
            "duration_s": a.duration,
            "rate": a.rate.per_sec(),
            "window": a.window,
            "sent": sent,
            "send_rate": send_rate,
            "acked": acked,
            "acked_ok": ok,
            "refused": refused,
            "unanswered": unanswered,
            "ack_secs": ack_secs,
            "ack_rate": ack_rate,
            "ack_ok_rate": ok_rate,
            "dropped_connections": dropped,
            "latency_us": lat,
            "metrics_window_s": window_secs,
            "metrics": changes.map(|c| {
                c.into_iter()
                    .map(|c| (c.series.clone(), json!(c)))
                    .collect::<serde_json::Map<_, _>>()
            }),
            "tool_cpu_s": tool_cpu,
            "server_cpu_s": server_cpu,
            "wall_s": wall,
            "errors": errors,
        }));
        return Ok(());
    }
    println!(
        "chat: {} clients to {} from {procs} process(es), {} s at {rate_text}, window {} per client",
        report::int(a.clients as u64),
        a.url,
        a.duration,
        a.window
    );
    println!(
        "  setup       {} connected, {} failed in {setup_secs:.2} s",
        report::int(opened),
        report::int(failed)
    );
    println!(
        "  sent        {} = {} msg/s",
        report::int(sent),
        report::rate(send_rate)
    );
    println!(
        "  acked       {} ({} code 0, {} refused, {} unanswered) in {ack_secs:.2} s = {} /s, \
         code 0: {} /s{}",
        report::int(acked),
        report::int(ok),
        report::int(refused),
        report::int(unanswered),
        report::rate(ack_rate),
        report::rate(ok_rate),
        if dropped > 0 {
            format!("; {} connections dropped", report::int(dropped))
        } else {
            String::new()
        }
    );
    println!("  latency     {}   (send → ack)", report::percentiles(&lat));
    if let Some((secs, changes)) = &metrics_window {
        println!(
            "  metrics     over {secs:.2} s ({} s after the start of sending to its end):",
            a.warmup
        );
        for c in changes {
            print_change(c);
        }
    }
    print!("  cpu         tool {}", report::cpu(tool_cpu, wall));
    match server_cpu {
        Some(s) => println!(", server {}", report::cpu(s, wall)),
        None => println!(),
    }
    report::print_errors(&errors);
    Ok(())
}

/// Reads the metrics page `warmup` seconds after `go0` and again `duration` seconds
/// after it (when sending stops).
fn measure(
    url: &Url,
    go0: u64,
    warmup: f64,
    duration: f64,
    series: &[String],
) -> anyhow::Result<(f64, Vec<Change>)> {
    sleep_until(go0 + (warmup * 1e9) as u64);
    let start = metrics::scrape(url)?;
    sleep_until(go0 + (duration * 1e9) as u64);
    let end = metrics::scrape(url)?;
    Ok(metrics::changes(&start, &end, series))
}

fn sleep_until(t_ns: u64) {
    let now = mono_ns();
    if t_ns > now {
        std::thread::sleep(Duration::from_nanos(t_ns - now));
    }
}

/// A counter (named `…_total`, the Prometheus convention) with its rate; anything else
/// as its two readings.
fn print_change(c: &Change) {
    let value = |v: Option<f64>| v.map_or("-".into(), |v| report::int(v.max(0.0) as u64));
    match (c.delta, c.per_sec) {
        (Some(d), Some(r)) if c.series.ends_with("_total") => println!(
            "    {:<40} {} → {}: {}{} = {} /s",
            c.series,
            value(c.start),
            value(c.end),
            if d < 0.0 { "-" } else { "+" },
            report::int(d.abs() as u64),
            report::rate(r)
        ),
        _ => println!("    {:<40} {} → {}", c.series, value(c.start), value(c.end)),
    }
}
