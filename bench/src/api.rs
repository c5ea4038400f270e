//! `api`: request rate and latency of shardcast's HTTP API over keep-alive connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::cli::{ApiArgs, Route};
use crate::clock::{mono_ns, secs_between};
use crate::envelope::code_is_zero;
use crate::histogram::Histogram;
use crate::http_client::{self, Pool, PoolConfig};
use crate::procstat::{self_cpu, Server};
use crate::report;
use crate::report::Out;
use crate::url::Url;

pub fn run(a: ApiArgs, out: &Out) -> anyhow::Result<()> {
    let api = Url::parse(&a.api, true)?;
    let server = Server::new(a.server_pid.clone().unwrap_or_default().0);
    server.check().map_err(anyhow::Error::msg)?;
    let threads = a.threads.clamp(1, a.connections.max(1));
    let (path, body) = match a.route {
        Route::IsOnline => ("/api/is_online", r#"{"clientId":"AAAAAAAAAAAAAAAAAAAAAA"}"#),
        Route::SendToSystem => ("/api/send_to_system", r#"{"msg":"bench","data":"x"}"#),
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nSystemId: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        api.authority,
        a.system,
        body.len()
    )
    .into_bytes();
    let code0 = Arc::new(AtomicU64::new(0));
    let s0 = server.sample();
    let cpu0 = self_cpu();
    let t0 = mono_ns();
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns = a.connections / threads + usize::from(t < a.connections % threads);
        let total =
            a.requests / threads as u64 + u64::from((t as u64) < a.requests % threads as u64);
        let request = request.clone();
        let code0 = Arc::clone(&code0);
        let cfg = PoolConfig {
            dst: api.addr,
            src: None,
            connections: conns,
            depth: a.depth.max(1),
            total,
            rate: None,
            token_base: 0,
            fresh: false,
        };
        handles.push(std::thread::spawn(move || {
            let pool = Pool::new(
                cfg,
                Box::new(move |_, _, out| out.extend_from_slice(&request)),
                Box::new(move |status, body| {
                    if code_is_zero(body) {
                        code0.fetch_add(1, Ordering::Relaxed);
                    }
                    status == 200
                }),
            );
            http_client::run(pool, mono_ns() + 3_600_000_000_000)
        }));
    }
    let mut latency = Histogram::new();
    let (mut answered, mut ok, mut lost) = (0, 0, 0);
    let (mut first, mut last) = (u64::MAX, 0);
    let mut errors = Vec::new();
    for h in handles {
        let pool = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        let r = pool.report();
        answered += r.answered;
        ok += r.succeeded;
        lost += r.lost;
        if r.first_send_ns != 0 {
            first = first.min(r.first_send_ns);
        }
        last = last.max(r.last_answer_ns);
        latency.merge(&pool.latency);
        report::merge_errors(&mut errors, &r.errors);
    }
    let t1 = mono_ns();
    let tool_cpu = self_cpu() - cpu0;
    let s1 = server.sample();
    let (secs, rate) = crate::clock::rate(answered, first, last);
    let lat = latency.summary_us();
    let wall = secs_between(t0, t1);
    let server_cpu = match (s0, s1) {
        (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
        _ => None,
    };
    let code0 = code0.load(Ordering::Relaxed);
    if answered == 0 {
        anyhow::bail!("no request was answered:\n{}", report::error_lines(&errors));
    }
    if out.json {
        out.emit(json!({
                "kind": "api",
                "route": path,
                "connections": a.connections,
                "depth": a.depth,
                "requests": a.requests,
                "answered": answered,
                "http_200": ok,
                "code_0": code0,
                "lost": lost,
                "secs": secs,
                "rate": rate,
                "latency_us": lat,
                "tool_cpu_s": tool_cpu,
                "server_cpu_s": server_cpu,
                "errors": errors,
        }));
        return Ok(());
    }
    println!(
        "api: {} × {path} over {} connection(s), {} in flight each",
        report::int(a.requests),
        a.connections,
        a.depth
    );
    println!(
        "  answered    {} ({} HTTP 200, {} with code 0, {} lost) in {secs:.2} s = {} req/s",
        report::int(answered),
        report::int(ok),
        report::int(code0),
        report::int(lost),
        report::rate(rate)
    );
    println!("  latency     {}", report::percentiles(&lat));
    print!("  cpu         tool {}", report::cpu(tool_cpu, wall));
    match server_cpu {
        Some(s) => println!(", server {}", report::cpu(s, wall)),
        None => println!(),
    }
    report::print_errors(&errors);
    Ok(())
}
