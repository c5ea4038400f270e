//! `resume` (docs/api.md §8): N clients connect (each welcome must carry a resume
//! token), optionally join a group, process `--before` pushes, then all drop with a TCP
//! reset. Once the server's `shardcast_connections_detached` gauge counts them all,
//! M pushes are sent into the gap, and all N reconnect at once with
//! `resume=<token>&last=<messageId of the last push each processed>`. The pushes go
//! over one keep-alive connection, so that their order is defined. Per client, the
//! time from the start of its reconnect (TCP connect) to the welcome and every missed
//! frame; checked: `resumed:true`, the same clientId, `recovered:true`, the missed
//! messageIds in order. Reports resumes per second (completed / first reconnect start
//! → last completion), the latency percentiles, failures by reason, and the server's CPU
//! over the burst.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::cli::ResumeArgs;
use crate::clock::{mono_ns, secs_between};
use crate::fleet::{Connected, Fleet};
use crate::histogram::Histogram;
use crate::ipc::{BindSpec, Cmd, Event, ResumeSpec};
use crate::metrics::{self, Reading};
use crate::plan::Plan;
use crate::procstat::self_cpu;
use crate::report::{self, Out};
use crate::url::Url;

const DETACHED: &str = "shardcast_connections_detached";
const RESULTS: [&str; 3] = ["resumed", "unknown", "invalid"];

/// The publisher: one keep-alive HTTP connection, so that one core of the node takes
/// every push and each connection gets them in the order sent (sends taken by
/// different cores of a node are not ordered with each other).
struct Publisher {
    api: Url,
    system: String,
    stream: TcpStream,
}

impl Publisher {
    fn connect(api: &Url, system: &str) -> anyhow::Result<Publisher> {
        let timeout = Duration::from_secs(10);
        let stream = TcpStream::connect_timeout(&SocketAddr::V4(api.addr), timeout)
            .with_context(|| format!("cannot connect to {}", api.authority))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Publisher {
            api: api.clone(),
            system: system.to_string(),
            stream,
        })
    }

    /// send_to_system with `body`: the messageId of the push.
    fn push(&mut self, body: &str) -> anyhow::Result<String> {
        write!(
            self.stream,
            "POST /api/send_to_system HTTP/1.1\r\nHost: {}\r\nSystemId: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.api.authority,
            self.system,
            body.len()
        )?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(n) = answer_len(&answer)? {
                answer.truncate(n);
                break;
            }
            let n = self
                .stream
                .read(&mut buf)
                .context("send_to_system: reading the answer")?;
            if n == 0 {
                bail!("send_to_system: the connection closed before the answer");
            }
            answer.extend_from_slice(&buf[..n]);
        }
        message_id_of_answer(&answer)
    }
}

/// The length of the complete HTTP answer at the start of `buf`, if it is complete.
fn answer_len(buf: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => bail!("send_to_system: bad answer: {e}"),
    };
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| anyhow!("send_to_system: an answer without Content-Length"))?;
    Ok((buf.len() >= head + len).then_some(head + len))
}

/// `data.messageId` of an HTTP answer whose body is a code-0 envelope.
fn message_id_of_answer(answer: &[u8]) -> anyhow::Result<String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("send_to_system: an answer without a body"))?;
    let status = head.lines().next().unwrap_or("");
    let v: Value = serde_json::from_str(body.trim())
        .map_err(|_| anyhow!("send_to_system: {status}: {body:?}"))?;
    match (v["code"].as_i64(), v["data"]["messageId"].as_str()) {
        (Some(0), Some(id)) if crate::resume_conns::parse_id(id).is_some() => Ok(id.to_string()),
        _ => bail!("send_to_system: {status}: {}", body.trim()),
    }
}

/// The metrics page, asked again (every 50 ms, for up to `secs`) while the node
/// answers 503 or cannot be read: a node busy with a crowd of drops may be.
fn scrape(url: &Url, secs: f64) -> anyhow::Result<Reading> {
    let deadline = mono_ns() + (secs * 1e9) as u64;
    loop {
        match metrics::scrape(url) {
            Ok(r) => return Ok(r),
            Err(e) if mono_ns() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn detached(url: &Url, secs: f64) -> anyhow::Result<f64> {
    Ok(scrape(url, secs)?.get(DETACHED).unwrap_or(0.0))
}

fn resumes(r: &Reading, result: &str) -> f64 {
    r.get(&format!("shardcast_resumes_total{{result=\"{result}\"}}"))
        .unwrap_or(0.0)
}

pub fn run(a: ResumeArgs, out: &Out) -> anyhow::Result<()> {
    let api = Url::parse(&a.api, true)?;
    let ws = match &a.url {
        Some(u) => u.clone(),
        None => format!("ws://{}/ws?systemId={}", api.authority, a.system),
    };
    let url = Url::parse(&ws, false)?;
    let metrics_url = match a.metrics.as_str() {
        "auto" => Url::parse(&format!("http://{}/metrics", api.authority), true)?,
        u => Url::parse(u, true)?,
    };
    let server = a.conns.server();
    server.check().map_err(anyhow::Error::msg)?;
    let bind = a.group.as_ref().map(|g| BindSpec {
        api: api.addr,
        host: api.authority.clone(),
        system: a.system.clone(),
        group: g.clone(),
        src: None,
    });
    let specs = Plan {
        url: &url,
        conns: &a.conns,
        total: a.clients,
        want_welcome: true,
        capture_ids: false,
        bind: bind.clone(),
        chat: None,
        drain_timeout_ms: 0,
        quiet_ms: if bind.is_some() { 500 } else { 100 },
        resume: Some(ResumeSpec {
            concurrency: a.reconnect_concurrency,
            timeout_ms: (a.resume_timeout * 1000.0) as u64,
        }),
    }
    .specs()?;
    let procs = specs.len();
    let fleet = Fleet::start(specs)?;

    // Connect (and bind).
    let setup0 = mono_ns();
    let Connected {
        readies,
        opened,
        failed,
        errors,
    } = fleet.connect_all("client", Duration::from_secs(a.conns.setup_timeout), &ws)?;
    let setup_secs = secs_between(setup0, mono_ns());
    let bind_failed: u64 = readies.iter().map(|r| r.bind_failed).sum();
    let mut handshake = Histogram::new();
    for r in &readies {
        handshake.merge(&Histogram::from_wire(&r.handshake));
    }

    // Pushes the clients process before the drop; the last one is their `last`.
    let mut publisher = Publisher::connect(&api, &a.system)?;
    let mut ids = Vec::new();
    for i in 0..a.before {
        ids.push(publisher.push(&format!("{{\"msg\":\"before\",\"data\":\"{i}\"}}"))?);
    }
    let detached0 = detached(&metrics_url, 10.0).context("before the drop")?;
    fleet.broadcast(Cmd::Drop {
        wait_for: ids.last().cloned(),
        wait_ms: 10_000,
    });
    let drops = fleet.collect("drop", Duration::from_secs(60), |ev| match ev {
        Event::Dropped(r) => Some(r),
        _ => None,
    })?;
    let drop0 = mono_ns();
    let dropped: u64 = drops.iter().map(|r| r.dropped).sum();
    let missed_before: u64 = drops.iter().map(|r| r.missed_before).sum();
    let notices: u64 = drops.iter().map(|r| r.other_frames).sum();

    // Until the server has seen every drop.
    let want = detached0 + dropped as f64;
    let detach_deadline = drop0 + (a.detach_timeout * 1e9) as u64;
    let left = || secs_between(mono_ns(), detach_deadline).max(1.0);
    let mut seen = detached(&metrics_url, left()).context("after the drop")?;
    while seen < want {
        if mono_ns() >= detach_deadline {
            bail!(
                "after {} s the server counts {seen} detached connections, want {want} \
                 ({dropped} dropped, {detached0} before): is ws.resume_window set?",
                a.detach_timeout
            );
        }
        std::thread::sleep(Duration::from_millis(50));
        seen = detached(&metrics_url, left()).context("after the drop")?;
    }
    let detach_secs = secs_between(drop0, mono_ns());

    // The gap.
    for i in 0..a.messages {
        ids.push(publisher.push(&format!("{{\"msg\":\"gap\",\"data\":\"{i}\"}}"))?);
    }
    drop(publisher);
    std::thread::sleep(Duration::from_millis(a.settle));

    // The reconnect burst.
    let m0 = scrape(&metrics_url, 10.0).context("before the reconnects")?;
    let s0 = server.sample();
    let cpu0 = self_cpu();
    let t0 = mono_ns();
    fleet.broadcast(Cmd::Resume { ids: ids.clone() });
    let timeout = Duration::from_secs_f64(a.resume_timeout + 60.0);
    let results = fleet.collect("resume", timeout, |ev| match ev {
        Event::Resumed(r) => Some(r),
        _ => None,
    })?;
    let t1 = mono_ns();
    let s1 = server.sample();
    let tool_cpu = self_cpu() - cpu0 + results.iter().map(|r| r.cpu_s).sum::<f64>();
    let m1 = scrape(&metrics_url, 10.0).context("after the reconnects")?;
    let detached_after = m1.get(DETACHED).unwrap_or(0.0);
    fleet.shutdown();

    let sum = |f: fn(&crate::ipc::ResumeReport) -> u64| results.iter().map(|r| f(r)).sum::<u64>();
    let attempted = sum(|r| r.attempted);
    let completed = sum(|r| r.completed);
    let resume_failed = sum(|r| r.failed);
    let (resumed, same_id, recovered, frames) = (
        sum(|r| r.resumed),
        sum(|r| r.same_id),
        sum(|r| r.recovered),
        sum(|r| r.frames),
    );
    let mut latency = Histogram::new();
    let mut welcome = Histogram::new();
    let mut resume_errors = Vec::new();
    let (mut first, mut last_start, mut last_done) = (u64::MAX, 0, 0);
    for r in &results {
        latency.merge(&Histogram::from_wire(&r.latency));
        welcome.merge(&Histogram::from_wire(&r.welcome));
        if r.first_start_ns != 0 {
            first = first.min(r.first_start_ns);
        }
        last_start = last_start.max(r.last_start_ns);
        last_done = last_done.max(r.last_done_ns);
        report::merge_errors(&mut resume_errors, &r.errors);
    }
    let (burst_secs, rate) = crate::clock::rate(completed, first, last_done);
    let start_spread = if first == u64::MAX {
        0.0
    } else {
        secs_between(first, last_start)
    };
    let lat = latency.summary_us();
    let wel = welcome.summary_us();
    let hs = handshake.summary_us();
    let wall = secs_between(t0, t1);
    let server_cpu = match (s0, s1) {
        (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
        _ => None,
    };
    let cpu_per_resume_us = server_cpu
        .filter(|_| completed > 0)
        .map(|c| c * 1e6 / completed as f64);
    let counted: serde_json::Map<String, Value> = RESULTS
        .iter()
        .map(|r| (r.to_string(), json!(resumes(&m1, r) - resumes(&m0, r))))
        .collect();
    let missed = a.messages;

    if out.json {
        out.emit(json!({
            "kind": "resume",
            "url": ws,
            "procs": procs,
            "clients": a.clients,
            "connected": opened,
            "connect_failed": failed,
            "group": a.group,
            "bind_failed": bind_failed,
            "setup_secs": setup_secs,
            "handshake_us": hs,
            "before": a.before,
            "messages": missed,
            "reconnect_concurrency": a.reconnect_concurrency,
            "dropped": dropped,
            "missed_before_drop": missed_before,
            "frames_before_drop_other": notices,
            "detach_secs": detach_secs,
            "message_ids": ids,
            "attempted": attempted,
            "completed": completed,
            "failed": resume_failed,
            "welcomed_resumed": resumed,
            "welcomed_same_id": same_id,
            "welcomed_recovered": recovered,
            "frames_after_resume": frames,
            "burst_secs": burst_secs,
            "start_spread_secs": start_spread,
            "resumes_per_sec": rate,
            "latency_us": lat,
            "welcome_us": wel,
            "server_resumes_total": counted,
            "detached_after": detached_after,
            "tool_cpu_s": tool_cpu,
            "server_cpu_s": server_cpu,
            "server_cpu_per_resume_us": cpu_per_resume_us,
            "server_rss": s1.map(|s| s.rss),
            "wall_s": wall,
            "errors": errors,
            "resume_errors": resume_errors,
        }));
    } else {
        println!(
            "resume: {} clients to {ws} from {procs} process(es), {} push(es) before the drop, \
             {missed} in the gap",
            report::int(a.clients as u64),
            a.before
        );
        print!(
            "  connected   {} ({} failed) in {setup_secs:.2} s; handshake {}",
            report::int(opened),
            report::int(failed),
            report::percentiles(&hs)
        );
        if let Some(g) = &a.group {
            print!("; bound to {g} ({} failed)", report::int(bind_failed));
        }
        println!();
        report::print_errors(&errors);
        println!(
            "  dropped     {} with a TCP reset ({} had not processed the last push); all \
             detached after {detach_secs:.2} s",
            report::int(dropped),
            report::int(missed_before)
        );
        println!(
            "  resumed     {} of {} complete, {} failed in {burst_secs:.3} s = {} resumes/s \
             (reconnects started over {start_spread:.3} s)",
            report::int(completed),
            report::int(attempted),
            report::int(resume_failed),
            report::rate(rate)
        );
        println!(
            "  welcomes    {} resumed:true, {} same clientId, {} recovered:true; {} frames after",
            report::int(resumed),
            report::int(same_id),
            report::int(recovered),
            report::int(frames)
        );
        println!(
            "  latency     {}   (reconnect start → welcome and {missed} missed frame(s))",
            report::percentiles(&lat)
        );
        println!(
            "  welcome     {}   (reconnect start → welcome)",
            report::percentiles(&wel)
        );
        println!(
            "  server      resumes_total {}; detached now {detached_after}",
            RESULTS
                .iter()
                .map(|r| format!("{r} +{}", resumes(&m1, r) - resumes(&m0, r)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        print!("  cpu         tool {}", report::cpu(tool_cpu, wall));
        match server_cpu {
            Some(c) => println!(
                ", server {} ({:.1} µs per resume)",
                report::cpu(c, wall),
                cpu_per_resume_us.unwrap_or(0.0)
            ),
            None => println!(),
        }
        report::print_errors(&resume_errors);
    }
    if completed == 0 {
        bail!("no client resumed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{answer_len, message_id_of_answer};

    #[test]
    fn answers_end_at_their_content_length() {
        let a = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdHTTP/1.1";
        assert_eq!(answer_len(a).unwrap(), Some(a.len() - 8));
        assert_eq!(answer_len(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        assert_eq!(
            answer_len(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc").unwrap(),
            None
        );
        assert!(answer_len(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn message_ids_of_answers() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n\
            {\"code\":0,\"msg\":\"success\",\"data\":{\"messageId\":\"3f1c0a9e5b7d2468\"}}";
        assert_eq!(message_id_of_answer(ok).unwrap(), "3f1c0a9e5b7d2468");
        let refused = b"HTTP/1.1 200 OK\r\n\r\n{\"code\":-1,\"msg\":\"busy\",\"data\":[]}";
        assert!(message_id_of_answer(refused)
            .unwrap_err()
            .to_string()
            .contains("busy"));
        assert!(message_id_of_answer(b"HTTP/1.1 503 x\r\n\r\n<html>").is_err());
        assert!(message_id_of_answer(b"garbage").is_err());
    }
}
