//! Formatting of results: human summaries and the merge of error samples.

use std::fmt::Write as _;

/// Where results go: the human summary, or one JSON object (tagged with `--label`).
pub struct Out {
    pub json: bool,
    pub label: Option<String>,
}

impl Out {
    pub fn emit(&self, mut v: serde_json::Value) {
        if let (Some(label), Some(obj)) = (&self.label, v.as_object_mut()) {
            obj.insert("label".into(), serde_json::Value::String(label.clone()));
        }
        println!("{v}");
    }
}

/// `1234567` → `1,234,567`.
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with 3 significant digits and a k/M suffix.
pub fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Microseconds as `µs` or `ms`.
pub fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

pub fn bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b.abs() >= 1024.0 {
        format!("{:.2} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// Counts one more `what` in a worker's error sample: at most 8 distinct texts, the
/// last of which counts any further ones.
pub fn tally(errors: &mut Vec<(String, u64)>, what: String) {
    if let Some(e) = errors.iter_mut().find(|(w, _)| *w == what) {
        e.1 += 1;
    } else if errors.len() < 8 {
        errors.push((what, 1));
    } else if let Some(e) = errors.last_mut() {
        e.1 += 1;
    }
}

/// Adds `more` into `into`, keeping at most 10 distinct texts.
pub fn merge_errors(into: &mut Vec<(String, u64)>, more: &[(String, u64)]) {
    for (text, n) in more {
        if let Some(e) = into.iter_mut().find(|(t, _)| t == text) {
            e.1 += n;
        } else if into.len() < 10 {
            into.push((text.clone(), *n));
        }
    }
}

/// Error samples as indented lines (empty when none).
/// "p50 …  p90 …  p99 …  max …" of a latency summary.
pub fn percentiles(l: &crate::histogram::LatencySummary) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  max {}",
        us(l.p50_us),
        us(l.p90_us),
        us(l.p99_us),
        us(l.max_us)
    )
}

/// Prints the tally of errors, if there is one.
pub fn print_errors(errors: &[(String, u64)]) {
    if !errors.is_empty() {
        print!("  errors\n{}", error_lines(errors));
    }
}

pub fn error_lines(errors: &[(String, u64)]) -> String {
    let mut s = String::new();
    for (text, n) in errors {
        let _ = writeln!(s, "    {n:>8} × {text}");
    }
    s
}

/// CPU seconds as "1.23 s (45 % of a core)" over `wall` seconds.
pub fn cpu(s: f64, wall: f64) -> String {
    if wall > 0.0 {
        format!("{s:.2} s ({:.0} % of a core)", 100.0 * s / wall)
    } else {
        format!("{s:.2} s")
    }
}
