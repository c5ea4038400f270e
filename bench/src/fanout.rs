//! `fanout` (shardcast's API) and `generic` (any server with a WebSocket subscribe URL
//! and an HTTP publish URL): N subscribers, then M messages published over keep-alive
//! HTTP, each stamped with its send time; reports the delivery rate (frames received by
//! all subscribers / time from the first publish to the last receipt), the share of the
//! expected frames delivered, the publish-to-receive latency, the bytes each delivery
//! took on the wire (and how many came compressed, with `--deflate`) and the CPU of
//! both sides.

use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::cli::{ConnArgs, FanoutArgs, GenericArgs, Mode, PublishArgs};
use crate::clock::{mono_ns, secs_between};
use crate::envelope::code_is_zero;
use crate::fleet::{Connected, Fleet};
use crate::histogram::Histogram;
use crate::http_client::{self, Judge, MakeRequest, Pool, PoolConfig};
use crate::ipc::{BindSpec, Cmd, Event, ReadyReport, ResultReport};
use crate::json_body::JsonBody;
use crate::plan::Plan;
use crate::procstat::self_cpu;
use crate::report::Out;
use crate::url::Url;
use crate::{marker, report};

/// What each message carries.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// The marker and `x` filler, this many bytes: a JSON string in shardcast's `data`.
    Filler(usize),
    /// `--payload-json`: a JSON object, the value of shardcast's `data` as it is.
    Json(JsonBody),
}

/// The seed of `--payload-json`'s body: the same body in every run.
const JSON_SEED: u64 = 1;

impl Body {
    pub(crate) fn of(p: &PublishArgs) -> anyhow::Result<Body> {
        Ok(match p.payload_json {
            Some(n) => Body::Json(JsonBody::new(n, JSON_SEED)?),
            None => Body::Filler(p.payload),
        })
    }

    /// Bytes of the body as published (inside shardcast's envelope: of `data`'s value,
    /// less a filler string's quotes).
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Filler(n) => (*n).max(marker::MARKER_LEN),
            Body::Json(b) => b.len(),
        }
    }

    /// The body stamped `now`, as it is (a `generic` request's {payload}).
    fn raw(&self, now: u64) -> String {
        match self {
            Body::Filler(n) => marker::payload(now, *n),
            Body::Json(b) => b.text(now),
        }
    }

    /// The body stamped `now` as a JSON value (shardcast's `data`).
    fn json_value(&self, now: u64) -> String {
        match self {
            Body::Filler(n) => format!("\"{}\"", marker::payload(now, *n)),
            Body::Json(b) => b.text(now),
        }
    }
}

/// What is published, and where.
enum Target {
    Shardcast {
        api: Url,
        system: String,
        group: String,
        mode: Mode,
    },
    Generic {
        url: Url,
        template: String,
        headers: Vec<(String, String)>,
    },
}

struct Job<'a> {
    label: String,
    sub_url: Url,
    want_welcome: bool,
    bind: Option<BindSpec>,
    subscribers: usize,
    publish: &'a PublishArgs,
    conns: &'a ConnArgs,
    target: Target,
}

pub fn run_shardcast(a: FanoutArgs, out: &Out) -> anyhow::Result<()> {
    let api = Url::parse(&a.api, true)?;
    let sub = match &a.url {
        Some(u) => u.clone(),
        None => format!("ws://{}/ws?systemId={}", api.authority, a.system),
    };
    let sub_url = Url::parse(&sub, false)?;
    if a.mode == Mode::Group && a.subscribers > 3000 && !out.json {
        eprintln!(
            "note: group mode binds every subscriber, and each bind sends an online notice to \
             every member already in the group: ~{} notices before the first publish \
             (none on a node with ws.notices = false; --mode system fans out without \
             that setup)",
            report::int((a.subscribers as u64).pow(2) / 2)
        );
    }
    let bind = (a.mode == Mode::Group).then(|| BindSpec {
        api: api.addr,
        host: api.authority.clone(),
        system: a.system.clone(),
        group: a.group.clone(),
        src: None,
    });
    let mode = match a.mode {
        Mode::Group => "group",
        Mode::System => "system",
        Mode::Client => "client",
    };
    run(
        Job {
            label: format!("shardcast {mode}"),
            sub_url,
            want_welcome: true,
            bind,
            subscribers: a.subscribers,
            publish: &a.publish,
            conns: &a.conns,
            target: Target::Shardcast {
                api,
                system: a.system.clone(),
                group: a.group.clone(),
                mode: a.mode,
            },
        },
        out,
    )
}

pub fn run_generic(a: GenericArgs, out: &Out) -> anyhow::Result<()> {
    let sub_url = Url::parse(&a.subscribe, false)?;
    let url = Url::parse(&a.publish, true)?;
    if !a.body.contains("{payload}") {
        bail!("--body must contain {{payload}}");
    }
    let mut headers = Vec::new();
    for h in &a.headers {
        let Some((k, v)) = h.split_once(':') else {
            bail!("--header {h:?}: want `Name: value`");
        };
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    run(
        Job {
            label: format!("generic {}", a.publish),
            sub_url,
            want_welcome: a.welcome,
            bind: None,
            subscribers: a.subscribers,
            publish: &a.publish_args,
            conns: &a.conns,
            target: Target::Generic {
                url,
                template: a.body.clone(),
                headers,
            },
        },
        out,
    )
}

/// How many of messages 0..m land on ids [from, from + n) of `total`, round-robin.
fn round_robin_share(m: u64, total: u64, from: u64, n: u64) -> u64 {
    if total == 0 || n == 0 {
        return 0;
    }
    let full = m / total;
    let rest = m % total;
    let extra = rest.saturating_sub(from).min(n);
    full * n + extra
}

/// The request builder and success test of pushes through shardcast's API: message
/// `i` carries `body`, marked, as its `data` (filler as a JSON string, `--payload-json`
/// as the object it is); in client mode it goes to `client_ids[i % len]`, round-robin.
pub(crate) fn shardcast_publisher(
    api: &Url,
    system: &str,
    group: &str,
    mode: Mode,
    body: Body,
    client_ids: Vec<String>,
) -> (MakeRequest, Judge) {
    let path = match mode {
        Mode::Group => "/api/send_to_group",
        Mode::System => "/api/send_to_system",
        Mode::Client => "/api/send_to_client",
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nSystemId: {system}\r\n\
         Content-Type: application/json\r\n",
        api.authority
    );
    let group = serde_json::to_string(group).unwrap_or_default();
    let make: MakeRequest = Box::new(move |i, now, out| {
        let data = body.json_value(now);
        let body = match mode {
            Mode::Group => format!("{{\"groupName\":{group},\"data\":{data}}}"),
            Mode::System => format!("{{\"data\":{data}}}"),
            Mode::Client => {
                let id = if client_ids.is_empty() {
                    ""
                } else {
                    client_ids[(i % client_ids.len() as u64) as usize].as_str()
                };
                format!("{{\"clientId\":\"{id}\",\"data\":{data}}}")
            }
        };
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body.as_bytes());
    });
    let judge: Judge = Box::new(|status, body| status == 200 && code_is_zero(body));
    (make, judge)
}

/// The publisher: request builder and success test.
fn publisher(job: &Job, body: Body, client_ids: Vec<String>) -> (MakeRequest, Judge, Url) {
    match &job.target {
        Target::Shardcast {
            api,
            system,
            group,
            mode,
        } => {
            let (make, judge) = shardcast_publisher(api, system, group, *mode, body, client_ids);
            (make, judge, api.clone())
        }
        Target::Generic {
            url,
            template,
            headers,
        } => {
            let mut head = format!("POST {} HTTP/1.1\r\nHost: {}\r\n", url.path, url.authority);
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            let template = template.clone();
            let make: MakeRequest = Box::new(move |_i, now, out| {
                let body = template.replace("{payload}", &body.raw(now));
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(body.as_bytes());
            });
            let judge: Judge = Box::new(|status, _| (200..300).contains(&status));
            (make, judge, url.clone())
        }
    }
}

/// The marked frames each worker should get when `m` messages are published (in
/// client mode round-robin over the clientIds, in the workers' order), and those ids.
pub(crate) fn expected_frames(
    readies: &[ReadyReport],
    m: u64,
    client_mode: bool,
) -> (Vec<u64>, Vec<String>) {
    let total_ids: u64 = readies.iter().map(|r| r.client_ids.len() as u64).sum();
    let mut from = 0;
    let mut expected = Vec::new();
    let mut client_ids = Vec::new();
    for r in readies {
        expected.push(if client_mode {
            let n = r.client_ids.len() as u64;
            let e = round_robin_share(m, total_ids, from, n);
            from += n;
            e
        } else {
            r.opened * m
        });
        client_ids.extend(r.client_ids.iter().cloned());
    }
    (expected, client_ids)
}

/// Tells each worker how many marked frames to expect, publishes `pool`'s requests,
/// and collects each worker's count (complete, or given up `drain_ms` after its last
/// frame once the publisher is done).
pub(crate) fn publish_and_count(
    fleet: &Fleet,
    expected: &[u64],
    pool: Pool,
    drain_ms: u64,
) -> anyhow::Result<(Pool, Vec<ResultReport>)> {
    for (i, e) in expected.iter().enumerate() {
        fleet.send(i, Cmd::Go { expected: *e });
    }
    fleet.collect("armed", Duration::from_secs(30), |ev| match ev {
        Event::Armed => Some(()),
        _ => None,
    })?;
    let pool = http_client::run(pool, mono_ns() + 600_000_000_000)?;
    fleet.broadcast(Cmd::PublishDone);
    let results = fleet.results(Duration::from_millis(drain_ms + 120_000))?;
    Ok((pool, results))
}

fn run(job: Job, out: &Out) -> anyhow::Result<()> {
    let client_mode = matches!(
        job.target,
        Target::Shardcast {
            mode: Mode::Client,
            ..
        }
    );
    let server = job.conns.server();
    server.check().map_err(anyhow::Error::msg)?;
    let body = Body::of(job.publish)?;
    let m = job.publish.messages;
    let specs = Plan {
        url: &job.sub_url,
        conns: job.conns,
        total: job.subscribers,
        want_welcome: job.want_welcome,
        capture_ids: client_mode,
        bind: job.bind.clone(),
        chat: None,
        drain_timeout_ms: job.publish.drain_timeout,
        quiet_ms: if job.bind.is_some() { 500 } else { 100 },
        resume: None,
    }
    .specs()?;
    let procs = specs.len();
    let fleet = Fleet::start(specs)?;

    // Subscribe (and bind).
    let setup0 = mono_ns();
    let setup = Duration::from_secs(job.conns.setup_timeout);
    let target = format!("ws://{}{}", job.sub_url.authority, job.sub_url.path);
    let Connected {
        readies,
        opened,
        failed,
        mut errors,
    } = fleet.connect_all("subscriber", setup, &target)?;
    let setup_secs = secs_between(setup0, mono_ns());
    let bind_failed: u64 = readies.iter().map(|r| r.bind_failed).sum();
    let deflate_agreed: u64 = readies.iter().map(|r| r.deflate_agreed).sum();
    let setup_frames: u64 = readies.iter().map(|r| r.setup_frames).sum();
    let (expected, client_ids) = expected_frames(&readies, m, client_mode);
    let expected_total: u64 = expected.iter().sum();
    std::thread::sleep(Duration::from_millis(job.publish.settle));

    // Publish and count.
    let s0 = server.sample();
    let cpu0 = self_cpu();
    let go0 = mono_ns();
    let (make, judge, api) = publisher(&job, body.clone(), client_ids);
    let src = crate::sources::parse(&job.conns.sources, api.is_loopback())?
        .last()
        .copied();
    let pool = Pool::new(
        PoolConfig {
            dst: api.addr,
            src,
            connections: job.publish.publishers.max(1),
            depth: job.publish.depth.max(1),
            total: m,
            rate: job.publish.rate.per_sec(),
            token_base: 0,
            fresh: job.publish.new_connection_per_request,
        },
        make,
        judge,
    );
    let (pool, results) = publish_and_count(&fleet, &expected, pool, job.publish.drain_timeout)?;
    let go1 = mono_ns();
    let s1 = server.sample();
    let tool_cpu = self_cpu() - cpu0 + results.iter().map(|r| r.cpu_s).sum::<f64>();
    fleet.shutdown();

    let pubr = pool.report();
    report::merge_errors(&mut errors, &pubr.errors);
    let mut latency = Histogram::new();
    let (mut received, mut other, mut dropped, mut last_rx) = (0, 0, 0, 0);
    let (mut wire_bytes, mut compressed) = (0, 0);
    for r in &results {
        received += r.received;
        wire_bytes += r.wire_bytes;
        compressed += r.compressed;
        other += r.other;
        dropped += r.dropped;
        last_rx = last_rx.max(r.last_rx_ns);
        latency.merge(&Histogram::from_wire(&r.latency));
        report::merge_errors(&mut errors, &r.errors);
    }
    let lat = latency.summary_us();
    let deliver_secs = if last_rx > pubr.first_send_ns && pubr.first_send_ns > 0 {
        secs_between(pubr.first_send_ns, last_rx)
    } else {
        0.0
    };
    let delivered_rate = if deliver_secs > 0.0 {
        received as f64 / deliver_secs
    } else {
        0.0
    };
    let delivered_pct = if expected_total > 0 {
        100.0 * received as f64 / expected_total as f64
    } else {
        0.0
    };
    let publish_secs = secs_between(pubr.first_send_ns, pubr.last_answer_ns);
    let publish_rate = if publish_secs > 0.0 {
        pubr.answered as f64 / publish_secs
    } else {
        0.0
    };
    let pub_lat = pool.latency.summary_us();
    let wall = secs_between(go0, go1);
    let server_cpu = match (s0, s1) {
        (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
        _ => None,
    };
    let cpu_per_delivery_us = server_cpu
        .filter(|_| received > 0)
        .map(|c| c * 1e6 / received as f64);
    let per_delivery = |x: u64| (received > 0).then(|| x as f64 / received as f64);
    let wire_per_delivery = per_delivery(wire_bytes);
    let compressed_pct = per_delivery(compressed).map(|x| 100.0 * x);

    if out.json {
        let v = json!({
            "kind": "fanout",
            "target": job.label,
            "subscribe_url": format!("ws://{}{}", job.sub_url.authority, job.sub_url.path),
            "procs": procs,
            "subscribers": job.subscribers,
            "subscribed": opened,
            "subscribe_failed": failed,
            "bind_failed": bind_failed,
            "setup_secs": setup_secs,
            "setup_frames": setup_frames,
            "messages": m,
            "rate": job.publish.rate.per_sec(),
            "publishers": job.publish.publishers.max(1),
            "depth": if job.publish.new_connection_per_request { 1 } else { job.publish.depth.max(1) },
            "new_connection_per_request": job.publish.new_connection_per_request,
            "payload": body.len(),
            "payload_json": matches!(body, Body::Json(_)),
            "deflate_offer": job.conns.deflate,
            "deflate_agreed": job.conns.deflate.as_ref().map(|_| deflate_agreed),
            "published": pubr.sent,
            "publish_accepted": pubr.succeeded,
            "publish_failed": pubr.answered - pubr.succeeded,
            "publish_lost": pubr.lost,
            "publish_rate": publish_rate,
            "publish_answer_us": pub_lat,
            "expected": expected_total,
            "received": received,
            "other_frames": other,
            "dropped_connections": dropped,
            "delivered_pct": delivered_pct,
            "delivered_per_sec": delivered_rate,
            "deliver_secs": deliver_secs,
            "latency_us": lat,
            "wire_bytes": wire_bytes,
            "wire_bytes_per_delivery": wire_per_delivery,
            "compressed_pct": job.conns.deflate.as_ref().and(compressed_pct),
            "tool_cpu_s": tool_cpu,
            "server_cpu_s": server_cpu,
            "server_cpu_per_delivery_us": cpu_per_delivery_us,
            "server_rss": s1.map(|s| s.rss),
            "wall_s": wall,
            "errors": errors,
        });
        out.emit(v);
        return Ok(());
    }
    println!(
        "fanout ({}): {} subscribers from {procs} process(es), {} messages of {} B{}",
        job.label,
        report::int(job.subscribers as u64),
        report::int(m),
        body.len(),
        if matches!(body, Body::Json(_)) {
            " of JSON"
        } else {
            ""
        }
    );
    print!(
        "  setup       {} subscribed, {} failed in {setup_secs:.2} s",
        report::int(opened),
        report::int(failed)
    );
    if job.bind.is_some() {
        print!(
            "; bound to the group ({} failed), {} notices read",
            report::int(bind_failed),
            report::int(setup_frames)
        );
    }
    println!();
    println!(
        "  publish     {} sent, {} accepted, {} refused, {} lost: {} msg/s; answer p50 {} p99 {}",
        report::int(pubr.sent),
        report::int(pubr.succeeded),
        report::int(pubr.answered - pubr.succeeded),
        report::int(pubr.lost),
        report::rate(publish_rate),
        report::us(pub_lat.p50_us),
        report::us(pub_lat.p99_us)
    );
    println!(
        "  delivered   {} of {} ({delivered_pct:.2} %) in {deliver_secs:.3} s = {} msg/s{}",
        report::int(received),
        report::int(expected_total),
        report::rate(delivered_rate),
        if dropped > 0 {
            format!("; {} connections dropped", report::int(dropped))
        } else {
            String::new()
        }
    );
    println!(
        "  latency     {}   (publish → receive)",
        report::percentiles(&lat)
    );
    print!(
        "  wire        {:.1} B per delivery",
        wire_per_delivery.unwrap_or(0.0)
    );
    match &job.conns.deflate {
        Some(_) => println!(
            ", {:.1} % compressed; permessage-deflate agreed on {} of {} connections",
            compressed_pct.unwrap_or(0.0),
            report::int(deflate_agreed),
            report::int(opened)
        ),
        None => println!(" (permessage-deflate not offered)"),
    }
    print!("  cpu         tool {}", report::cpu(tool_cpu, wall));
    match (server_cpu, s1) {
        (Some(c), Some(s)) => println!(
            ", server {} ({:.2} µs per delivery); server RSS {}",
            report::cpu(c, wall),
            cpu_per_delivery_us.unwrap_or(0.0),
            report::bytes(s.rss as f64)
        ),
        _ => println!(),
    }
    report::print_errors(&errors);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::round_robin_share;

    #[test]
    fn round_robin_shares_add_up() {
        for (m, total) in [(10u64, 4u64), (3, 7), (100, 10), (0, 5)] {
            let parts = [(0, 2), (2, 1), (3, total - 3)];
            let sum: u64 = parts
                .iter()
                .map(|&(f, n)| round_robin_share(m, total, f, n))
                .sum();
            assert_eq!(sum, m);
        }
        assert_eq!(round_robin_share(10, 4, 0, 2), 6);
    }
}
