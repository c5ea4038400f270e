//! `compare`: reads the JSON results of `idle`, `fanout`/`generic`, `chat` and `resume`
//! runs tagged with `--label`, takes the median of each figure over the runs of a label,
//! and prints them side by side with the ratio to the baseline label.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cli::CompareArgs;
use crate::report::{self, Out};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    Neither,
}

struct Metric {
    kind: &'static str,
    name: &'static str,
    unit: &'static str,
    path: &'static [&'static str],
    scale: f64,
    better: Better,
}

const METRICS: &[Metric] = &[
    Metric {
        kind: "idle",
        name: "connections open",
        unit: "",
        path: &["opened"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "idle",
        name: "connect rate",
        unit: "conn/s",
        path: &["connect_rate"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "idle",
        name: "handshake p50",
        unit: "ms",
        path: &["handshake_us", "p50_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "idle",
        name: "handshake p99",
        unit: "ms",
        path: &["handshake_us", "p99_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "idle",
        name: "server memory per connection",
        unit: "KiB",
        path: &["bytes_per_connection"],
        scale: 1.0 / 1024.0,
        better: Better::Lower,
    },
    Metric {
        kind: "idle",
        name: "with permessage-deflate",
        unit: "",
        path: &["deflate_agreed"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "idle",
        name: "server CPU while connecting",
        unit: "s",
        path: &["server_cpu_s"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "idle",
        name: "traffic frames received",
        unit: "",
        path: &["traffic", "received"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "idle",
        name: "memory per conn. after traffic",
        unit: "KiB",
        path: &["traffic", "bytes_per_connection"],
        scale: 1.0 / 1024.0,
        better: Better::Lower,
    },
    Metric {
        kind: "idle",
        name: "resume kept after traffic",
        unit: "KiB",
        path: &["traffic", "resume_kept_bytes"],
        scale: 1.0 / 1024.0,
        better: Better::Neither,
    },
    Metric {
        kind: "idle",
        name: "replay entries dropped by bound",
        unit: "",
        path: &["traffic", "resume_bound_dropped"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "fanout",
        name: "subscribers",
        unit: "",
        path: &["subscribed"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "fanout",
        name: "delivered",
        unit: "msg/s",
        path: &["delivered_per_sec"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "fanout",
        name: "delivered",
        unit: "%",
        path: &["delivered_pct"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "fanout",
        name: "latency p50",
        unit: "ms",
        path: &["latency_us", "p50_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "fanout",
        name: "latency p99",
        unit: "ms",
        path: &["latency_us", "p99_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "fanout",
        name: "latency max",
        unit: "ms",
        path: &["latency_us", "max_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "fanout",
        name: "wire bytes per delivery",
        unit: "B",
        path: &["wire_bytes_per_delivery"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "fanout",
        name: "deliveries compressed",
        unit: "%",
        path: &["compressed_pct"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "fanout",
        name: "with permessage-deflate",
        unit: "",
        path: &["deflate_agreed"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "fanout",
        name: "publish rate",
        unit: "msg/s",
        path: &["publish_rate"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "fanout",
        name: "server CPU",
        unit: "s",
        path: &["server_cpu_s"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "fanout",
        name: "server CPU per delivery",
        unit: "µs",
        path: &["server_cpu_per_delivery_us"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "fanout",
        name: "publish answer p99",
        unit: "ms",
        path: &["publish_answer_us", "p99_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "fanout",
        name: "bench tool CPU",
        unit: "s",
        path: &["tool_cpu_s"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "chat",
        name: "clients",
        unit: "",
        path: &["connected"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "chat",
        name: "sent",
        unit: "msg/s",
        path: &["send_rate"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "chat",
        name: "acked with code 0",
        unit: "msg/s",
        path: &["ack_ok_rate"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "chat",
        name: "ack latency p99",
        unit: "ms",
        path: &["latency_us", "p99_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "chat",
        name: "webhook events delivered",
        unit: "ev/s",
        path: &["metrics", "shardcast_webhook_delivered_total", "per_sec"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "chat",
        name: "webhook events dropped",
        unit: "ev/s",
        path: &["metrics", "shardcast_webhook_dropped_total", "per_sec"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "chat",
        name: "server CPU",
        unit: "s",
        path: &["server_cpu_s"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "chat",
        name: "bench tool CPU",
        unit: "s",
        path: &["tool_cpu_s"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "resume",
        name: "clients dropped",
        unit: "",
        path: &["dropped"],
        scale: 1.0,
        better: Better::Neither,
    },
    Metric {
        kind: "resume",
        name: "resumes complete",
        unit: "",
        path: &["completed"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "resume",
        name: "failures",
        unit: "",
        path: &["failed"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "resume",
        name: "resumes",
        unit: "res/s",
        path: &["resumes_per_sec"],
        scale: 1.0,
        better: Better::Higher,
    },
    Metric {
        kind: "resume",
        name: "resume latency p50",
        unit: "ms",
        path: &["latency_us", "p50_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "resume",
        name: "resume latency p90",
        unit: "ms",
        path: &["latency_us", "p90_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "resume",
        name: "resume latency p99",
        unit: "ms",
        path: &["latency_us", "p99_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "resume",
        name: "resume latency max",
        unit: "ms",
        path: &["latency_us", "max_us"],
        scale: 1e-3,
        better: Better::Lower,
    },
    Metric {
        kind: "resume",
        name: "server CPU over the burst",
        unit: "s",
        path: &["server_cpu_s"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "resume",
        name: "server CPU per resume",
        unit: "µs",
        path: &["server_cpu_per_resume_us"],
        scale: 1.0,
        better: Better::Lower,
    },
    Metric {
        kind: "resume",
        name: "drop → all detached",
        unit: "s",
        path: &["detach_secs"],
        scale: 1.0,
        better: Better::Neither,
    },
];

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// How a fan-out run published: "by P connection(s), D in flight each" or "on a new
/// connection each".
fn publishing(r: &Value) -> String {
    if r.get("new_connection_per_request").and_then(Value::as_bool) == Some(true) {
        return "on a new connection each".into();
    }
    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(1);
    format!(
        "by {} connection(s), {} in flight each",
        n("publishers"),
        n("depth")
    )
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".into(),
        Some(x) if unit.is_empty() => report::int(x.round().max(0.0) as u64),
        Some(x) if unit.ends_with("/s") => report::rate(x),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

pub fn run(a: CompareArgs, out: &Out) -> anyhow::Result<()> {
    let mut runs: Vec<Value> = Vec::new();
    for f in &a.files {
        let text = std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?;
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("{}: not JSON", f.display()))?;
            runs.push(v);
        }
    }
    let label_of = |v: &Value| {
        v.get("label")
            .and_then(Value::as_str)
            .unwrap_or("unlabelled")
            .to_string()
    };
    let mut labels: Vec<String> = Vec::new();
    for r in &runs {
        let l = label_of(r);
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    if labels.is_empty() {
        bail!("no results in the files given");
    }
    let baseline = a
        .baseline
        .clone()
        .unwrap_or_else(|| labels[labels.len() - 1].clone());
    if !labels.contains(&baseline) {
        bail!("baseline {baseline:?} is not among the labels {labels:?}");
    }
    // The baseline goes last, the others keep their order.
    labels.retain(|l| *l != baseline);
    labels.push(baseline.clone());
    let kind_of = |v: &Value| match v.get("kind").and_then(Value::as_str) {
        Some("idle") => "idle",
        Some("fanout") => "fanout",
        Some("chat") => "chat",
        Some("resume") => "resume",
        _ => "other",
    };

    let mut rows = Vec::new();
    for m in METRICS {
        let values: Vec<Option<f64>> = labels
            .iter()
            .map(|l| {
                median(
                    runs.iter()
                        .filter(|r| label_of(r) == *l && kind_of(r) == m.kind)
                        .filter_map(|r| get(r, m.path).and_then(Value::as_f64))
                        .map(|x| x * m.scale)
                        .collect(),
                )
            })
            .collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        rows.push((m, values));
    }
    let base_idx = labels.len() - 1;
    let count = |kind: &str, l: &str| {
        runs.iter()
            .filter(|r| kind_of(r) == kind && label_of(r) == l)
            .count()
    };
    let describe = |kind: &str| -> String {
        let Some(r) = runs.iter().find(|r| kind_of(r) == kind) else {
            return String::new();
        };
        let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "idle" => format!(
                "idle connections: {} per server{}",
                report::int(n("connections")),
                match get(r, &["traffic", "traffic"]).and_then(Value::as_str) {
                    Some(t) => format!(", then {t}"),
                    None => String::new(),
                }
            ),
            "chat" => format!(
                "client messages: {} clients, {} awaiting their ack each, for {} s{}",
                report::int(n("clients")),
                n("window"),
                r.get("duration_s").and_then(Value::as_f64).unwrap_or(0.0),
                match r.get("rate").and_then(Value::as_f64) {
                    Some(rate) => format!(" at {} msg/s", report::rate(rate)),
                    None => ", as fast as acked".into(),
                }
            ),
            "resume" => format!(
                "session resume: {} clients dropped with a TCP reset, {} push(es) in the gap, \
                 reconnected {}",
                report::int(n("clients")),
                n("messages"),
                match n("reconnect_concurrency") {
                    0 => "all at once".to_string(),
                    c => format!("{c} at a time per process"),
                }
            ),
            _ => format!(
                "fan-out: {} subscribers × {} messages of {} B{}, published {} {}",
                report::int(n("subscribers")),
                report::int(n("messages")),
                n("payload"),
                match r.get("payload_json").and_then(Value::as_bool) {
                    Some(true) => " of JSON",
                    _ => "",
                },
                publishing(r),
                match r.get("rate").and_then(Value::as_f64) {
                    Some(rate) => format!("at {} msg/s", report::rate(rate)),
                    None => "as fast as accepted".into(),
                }
            ),
        }
    };

    if out.json {
        let rows_json: Vec<Value> = rows
            .iter()
            .map(|(m, vals)| {
                let ratios: serde_json::Map<String, Value> = labels
                    .iter()
                    .zip(vals)
                    .filter(|(l, _)| **l != baseline)
                    .map(|(l, v)| {
                        let r = match (v, vals[base_idx]) {
                            (Some(x), Some(b)) if b != 0.0 => json!(x / b),
                            _ => Value::Null,
                        };
                        (l.clone(), r)
                    })
                    .collect();
                json!({
                    "kind": m.kind,
                    "metric": m.name,
                    "unit": m.unit,
                    "values": labels.iter().zip(vals).map(|(l, v)| (l.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "ratio_to_baseline": ratios,
                })
            })
            .collect();
        out.emit(
            json!({"kind": "compare", "labels": labels, "baseline": baseline, "rows": rows_json}),
        );
        return Ok(());
    }

    let others: Vec<usize> = (0..labels.len()).filter(|&i| i != base_idx).collect();
    // Columns as wide as the labels need (13 and 16 at least, as they always were).
    let w = labels
        .iter()
        .map(|l| l.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max(13);
    let rw = others
        .iter()
        .map(|&i| labels[i].chars().count() + baseline.chars().count() + 4)
        .max()
        .unwrap_or(0)
        .max(16);
    let mut s = String::new();
    let _ = write!(s, "{:<36}{:>8}", "", "");
    for l in &labels {
        let _ = write!(s, "{l:>w$}");
    }
    for &i in &others {
        let _ = write!(s, "{:>rw$}", format!("{}/{}", labels[i], baseline));
    }
    s.push('\n');
    let mut section = "";
    for (m, vals) in &rows {
        if m.kind != section {
            section = m.kind;
            let runs_note: Vec<String> = labels
                .iter()
                .map(|l| format!("{l} {}", count(m.kind, l)))
                .collect();
            let _ = writeln!(s, "{} (runs: {})", describe(m.kind), runs_note.join(", "));
        }
        let _ = write!(s, "  {:<34}{:>8}", m.name, m.unit);
        for v in vals {
            let _ = write!(s, "{:>w$}", fmt_value(*v, m.unit));
        }
        for &i in &others {
            let ratio = match (vals[i], vals[base_idx]) {
                (Some(x), Some(b)) if b != 0.0 && m.better != Better::Neither => {
                    format!("{:.2}", x / b)
                }
                _ => "".into(),
            };
            let hint = match m.better {
                Better::Higher if !ratio.is_empty() => " ↑",
                Better::Lower if !ratio.is_empty() => " ↓",
                _ => "  ",
            };
            let _ = write!(s, "{:>width$}{hint}", ratio, width = rw - 2);
        }
        s.push('\n');
    }
    s.push_str(
        "(↑ higher is better, ↓ lower is better; each figure is the median over the runs)\n",
    );
    print!("{s}");
    Ok(())
}
