//! Process lifecycle (docs/api.md §4, §6): core threads pinned to CPUs only with
//! `server.pin_cores`, the system registry survives a restart (open and token mode),
//! config validation (`check-config` and start-up name the bad key: unknown
//! key, wrong type, bad value), `SHARDCAST_<SECTION>_<KEY>` environment overrides, and
//! graceful shutdown on SIGTERM / SIGINT (clients get close 1001, `/readyz` answers 503
//! while draining, exit status 0 within `server.shutdown_timeout`).

use crate::support::{
    api::{expect_err, expect_ok},
    http::try_get,
    node::{build_config, free_port, run_binary, Node},
    raw_frames::raw_ws_handshake,
    SYS_A, SYS_B, WAIT,
};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn registered_systems_survive_a_restart() {
    let mut node = Node::start("");
    expect_ok(node.api("/api/register", None, "{\"systemId\":\"persisted\"}"));
    node.restart();

    let mut c = node.ws("persisted");
    let d = node.send_to_client("persisted", &c.client_id, "after restart", json!(1));
    assert_eq!(d["online"], json!(true));
    assert_eq!(c.expect_json(WAIT)["msg"], json!("after restart"));
    expect_err(
        node.api("/api/register", None, "{\"systemId\":\"persisted\"}"),
        200,
        "该系统ID已被注册",
    );
    // The configured systems are still there as well.
    node.ws(SYS_A);
}

#[test]
fn a_token_mode_secret_survives_a_restart() {
    let admin = "restart-admin-token";
    let mut node = Node::start(&format!(
        "[api]\nauth = \"token\"\nadmin_token = \"{admin}\"\nsystems = []\n"
    ));
    let d = expect_ok(node.api_with_headers(
        "/api/register",
        &[("AdminToken", admin)],
        "{\"systemId\":\"kept\"}",
    ));
    let secret = d["token"].as_str().unwrap().to_string();
    node.restart();
    let d = expect_ok(node.api_with_headers(
        "/api/get_group_list",
        &[("SystemId", "kept"), ("Token", &secret)],
        "{}",
    ));
    assert_eq!(d["count"], json!(0));
}

/// Writes a config (a free port, a temp data dir, plus `extra` verbatim) and returns
/// (tempdir guard, path).
fn write_config(extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let text = build_config(&format!("127.0.0.1:{}", free_port()), &data, extra);
    let path = dir.path().join("shardcast.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

fn assert_rejected(extra: &str, key: &str) {
    let (_dir, path) = write_config(extra);
    let (status, out) = run_binary(&["check-config", "-c", &path], Duration::from_secs(10));
    let status = status.expect("check-config did not exit within 10 s");
    assert!(
        !status.success(),
        "check-config accepted a config with bad {key}:\n{out}"
    );
    assert!(
        out.contains(key),
        "check-config output does not name {key}:\n{out}"
    );

    let (status, out) = run_binary(&["-c", &path], Duration::from_secs(10));
    let status =
        status.unwrap_or_else(|| panic!("shardcast started with bad {key}; output:\n{out}"));
    assert!(!status.success(), "start-up accepted bad {key}:\n{out}");
    assert!(
        out.contains(key),
        "start-up error does not name {key}:\n{out}"
    );
}

#[test]
fn check_config_accepts_a_valid_file() {
    let (_dir, path) = write_config("[ws]\nping_interval = \"500ms\"\nidle_timeout = \"48h\"\n");
    let (status, out) = run_binary(&["check-config", "-c", &path], Duration::from_secs(10));
    let status = status.expect("check-config did not exit within 10 s");
    assert!(
        status.success(),
        "check-config rejected a valid file:\n{out}"
    );
}

/// The shipped configurations are valid as they are, and the cluster example gives its
/// node a fixed id (resume routing through a proxy needs one: docs/cluster.md).
#[test]
fn the_shipped_configs_are_valid_and_the_cluster_example_has_a_fixed_node_id() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/");
    for file in ["shardcast.toml", "cluster-node.example.toml"] {
        let path = format!("{conf}{file}");
        let (status, out) = run_binary(&["check-config", "-c", &path], Duration::from_secs(10));
        let status = status.expect("check-config did not exit within 10 s");
        assert!(status.success(), "check-config rejects {file}:\n{out}");
    }
    let example = std::fs::read_to_string(format!("{conf}cluster-node.example.toml")).unwrap();
    let config: toml::Value = example.parse().expect("TOML");
    let id = config["cluster"]["node_id"].as_integer();
    assert!(
        id.is_some_and(|id| id > 0),
        "cluster-node.example.toml: node_id {id:?}"
    );
}

/// An error that stops the binary says its cause once (it used to print
/// "No such file or directory (os error 2): No such file or directory (os error 2)").
#[test]
fn a_fatal_error_says_its_cause_once() {
    let cause = "No such file or directory (os error 2)";
    let (status, out) = run_binary(
        &["-c", "/nonexistent/shardcast.toml"],
        Duration::from_secs(10),
    );
    assert!(!status.expect("exit").success());
    assert_eq!(out.matches(cause).count(), 1, "{out}");
    assert!(
        out.contains("cannot read config file /nonexistent/shardcast.toml"),
        "{out}"
    );
    // A data directory that cannot be made: the registry file's error.
    let (_dir, path) = write_config("[server]\ndata_dir = \"/proc/self/nothing/here\"\n");
    let (status, out) = run_binary(&["-c", &path], Duration::from_secs(10));
    assert!(!status.expect("exit").success());
    assert!(
        out.contains("registry file /proc/self/nothing/here/systems.json"),
        "{out}"
    );
    assert_eq!(out.matches(cause).count(), 1, "{out}");
}

#[test]
fn an_unknown_key_is_named() {
    assert_rejected("[server]\nbogus = 1\n", "server.bogus");
    assert_rejected("[api]\nsystemz = []\n", "api.systemz");
}

#[test]
fn a_wrong_type_or_bad_value_is_named() {
    assert_rejected("[server]\nworkers = \"two\"\n", "server.workers");
    assert_rejected("[ws]\nping_interval = 25\n", "ws.ping_interval");
    assert_rejected("[ws]\nidle_timeout = \"soon\"\n", "ws.idle_timeout");
    assert_rejected("[api]\nauth = \"maybe\"\n", "api.auth");
    assert_rejected("[api]\nlang = \"fr\"\n", "api.lang");
}

#[test]
fn environment_variables_override_config_keys() {
    let node = Node::start_with_env(
        "",
        &[("SHARDCAST_API_LANG", "en"), ("SHARDCAST_NO_SUCH_KEY", "1")],
    );
    // The English text of src/api/error.rs for a missing SystemId.
    expect_err(
        node.api("/api/is_online", None, "{}"),
        200,
        "SystemId must not be empty",
    );
    assert!(
        node.log().contains("SHARDCAST_NO_SUCH_KEY"),
        "an unknown SHARDCAST_ variable is ignored with a warning naming it; log:\n{}",
        node.log()
    );
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_zero() {
    // One core: a core without WebSocket connections has nothing to drain and
    // stops at once, closing its HTTP connections with it; with one core the
    // keep-alive connection below lives exactly as long as the drain.
    let mut node = Node::start("[server]\nshutdown_timeout = \"3s\"\nworkers = 1\n");
    let mut c1 = node.ws(SYS_A);
    let mut c2 = node.ws(SYS_B);
    node.bind(SYS_A, &c1.client_id, "g", "", "");
    c1.drain(WAIT);

    // /readyz is asked on a keep-alive connection opened before (the drain answers it
    // and closes it); the drain lasts while c1 and c2 have not answered their close
    // frame (they are not read until /readyz said 503).
    let mut ops = node.http();
    let r = ops.request("GET", "/readyz", &[], b"");
    assert_eq!(
        (r.status, r.closes()),
        (200, false),
        "/readyz before SIGTERM"
    );

    let start = Instant::now();
    node.sigterm();
    let draining_after = loop {
        let r = ops.request("GET", "/readyz", &[], b"");
        match r.status {
            503 => break start.elapsed(),
            200 => assert!(
                start.elapsed() < WAIT,
                "/readyz still 200 {:?} after SIGTERM",
                start.elapsed()
            ),
            other => panic!("/readyz answered {other} while draining: {:?}", r.text()),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("[lifecycle] /readyz 503 {draining_after:?} after SIGTERM");
    assert_eq!(c1.expect_close(WAIT), 1001, "close code on shutdown");
    assert_eq!(c2.expect_close(WAIT), 1001, "close code on shutdown");
    let status = node.wait_exit(Duration::from_secs(6));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        start.elapsed() <= Duration::from_secs(4),
        "exit took {:?} with shutdown_timeout 3s",
        start.elapsed()
    );
}

/// `/readyz` answers 503 from the moment the drain starts until the listener closes
/// (README "Operations"): a load balancer's probe on a new connection during the drain
/// gets an answer, not a refused connection, a reset or a timeout. The drain lasts here
/// because a WebSocket never answers its close frame: the node waits 2 s for the answer
/// (docs/api.md §2), within `shutdown_timeout` (3 s), and /readyz is asked for 1.6 s of
/// that. With two cores, the one without the WebSocket keeps listening too until the
/// node's drain is over.
#[test]
fn readyz_answers_503_on_new_connections_until_the_drain_ends() {
    let mut node = Node::start("[server]\nshutdown_timeout = \"3s\"\nworkers = 2\n");
    // A raw connection that never reads or answers the close frame.
    let mut s = std::net::TcpStream::connect(node.addr()).unwrap();
    let (st, _) = raw_ws_handshake(&mut s, node.addr(), &format!("/ws?systemId={SYS_A}"), "");
    assert_eq!(st, 101);
    assert_eq!(node.readyz(), Some(200), "/readyz before SIGTERM");
    let start = Instant::now();
    node.sigterm();
    let (mut ready, mut draining) = (0, 0);
    while start.elapsed() < Duration::from_millis(1600) {
        let asked = start.elapsed();
        match try_get(node.addr(), "/readyz", Duration::from_secs(1)) {
            Ok(r) if r.status == 503 => draining += 1,
            // Until the signal is handled.
            Ok(r) if r.status == 200 && draining == 0 && asked < Duration::from_secs(1) => {
                ready += 1
            }
            Ok(r) => panic!(
                "/readyz answered {} {:?} {asked:?} after SIGTERM ({draining} 503s before)",
                r.status,
                r.text()
            ),
            Err(e) => panic!(
                "/readyz {asked:?} after SIGTERM, while draining: {e} ({draining} 503s before)"
            ),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    eprintln!("[lifecycle] /readyz during the drain: {ready} x 200, then {draining} x 503");
    assert!(
        draining >= 10,
        "only {draining} answers of 503 during the drain"
    );
    let status = node.wait_exit(Duration::from_secs(6));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        start.elapsed() <= Duration::from_millis(4500),
        "exit took {:?} with shutdown_timeout 3s",
        start.elapsed()
    );
    drop(s);
}

#[test]
fn sigterm_without_clients_and_sigint_exit_zero_promptly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut node = Node::start("[server]\nshutdown_timeout = \"3s\"\n");
        let start = Instant::now();
        node.signal(sig);
        let status = node.wait_exit(Duration::from_secs(6));
        assert!(status.success(), "exit status after signal {sig}: {status}");
        assert!(
            start.elapsed() <= Duration::from_secs(4),
            "exit took {:?} after signal {sig}",
            start.elapsed()
        );
    }
}

#[test]
fn a_client_that_ignores_the_close_does_not_hold_shutdown_past_the_timeout() {
    let mut node = Node::start("[server]\nshutdown_timeout = \"2s\"\n");
    // A raw connection that never reads or answers the close frame.
    let mut s = std::net::TcpStream::connect(node.addr()).unwrap();
    let (st, _) = raw_ws_handshake(&mut s, node.addr(), &format!("/ws?systemId={SYS_A}"), "");
    assert_eq!(st, 101);
    let start = Instant::now();
    node.sigterm();
    let status = node.wait_exit(Duration::from_secs(6));
    assert!(status.success(), "exit status: {status}");
    assert!(
        start.elapsed() <= Duration::from_secs(3),
        "exit took {:?} with shutdown_timeout 2s",
        start.elapsed()
    );
    drop(s);
}

/// A node started on the port of one that exited a moment ago comes up (docs/api.md §7):
/// the dead process's listeners linger for a few milliseconds after it exits (io_uring
/// tears its sockets down after the process is gone), and the new node waits for them
/// (up to 5 s, saying so once) instead of stopping with "Address already in use". Twenty
/// restarts in a row, each at once after the exit, on the default driver (io_uring where
/// the kernel has it): about one in three found the port still taken before.
#[test]
fn a_node_restarted_at_once_on_its_port_comes_up() {
    let mut node = Node::start("[server]\nshutdown_timeout = \"300ms\"\n");
    let driver = |log: &str| {
        log.lines()
            .rev()
            .find(|l| l.contains("shardcast listening"))
            .and_then(|l| l.split("driver=").nth(1))
            .and_then(|d| d.split_whitespace().next())
            .unwrap_or("?")
            .to_string()
    };
    let port = node.port;
    let mut waited = 0;
    for run in 1..=20 {
        // Something to tear down: an idle keep-alive connection, and a WebSocket that
        // never answers the close, so the node exits at `shutdown_timeout` with it still
        // open (the case where its listeners outlive it).
        let mut h = node.http();
        assert_eq!(h.request("GET", "/healthz", &[], b"").status, 200);
        let mut ws = std::net::TcpStream::connect(node.addr()).unwrap();
        let path = format!("/ws?systemId={SYS_A}");
        assert_eq!(raw_ws_handshake(&mut ws, node.addr(), &path, "").0, 101);
        let before = node.log().len();
        if let Err(e) = node.restart_on_same_port() {
            panic!("restart {run} on port {port} failed: {e}");
        }
        assert_eq!(node.port, port);
        let log = node.log();
        let this_run = log.get(before..).unwrap_or("");
        let waits = this_run.matches("still in use").count();
        assert!(
            waits <= 1,
            "the wait is logged once, got {waits}:\n{this_run}"
        );
        waited += waits;
        if run == 1 {
            eprintln!("driver {}", driver(this_run));
        }
        // It serves.
        let mut c = node.ws(SYS_A);
        let d = node.send_to_client(SYS_A, &c.client_id, "after restart", json!(run));
        assert_eq!(d["online"], json!(true));
        assert_eq!(c.expect_json(WAIT)["msg"], json!("after restart"));
        c.close_cleanly();
    }
    eprintln!("20 restarts on port {port}, {waited} of them waited for it");
}

/// Logs are for files and journald as much as for a terminal: without a terminal on
/// stderr they carry no colour escape codes; `log.format = "json"` gives one JSON
/// object per line.
#[test]
fn logs_to_a_file_are_plain_text_or_json() {
    let node = Node::start("");
    let log = node.log();
    assert!(log.contains("shardcast listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file:\n{log}"
    );
    let node = Node::start("[log]\nformat = \"json\"\n");
    let line = node
        .log()
        .lines()
        .find(|l| l.contains("shardcast listening"))
        .map(str::to_owned)
        .expect("the listening line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["level"], json!("INFO"), "{v}");
    assert_eq!(v["fields"]["message"], json!("shardcast listening"), "{v}");
}

/// The CPUs each core thread may run on (`Cpus_allowed_list` of its task).
fn core_thread_cpus(pid: i32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    let mut cpus: Vec<(String, String)> = tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let name = name.trim().strip_prefix("shardcast-core")?.to_string();
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                .trim()
                .to_string();
            Some((name, list))
        })
        .collect();
    cpus.sort();
    cpus.into_iter().map(|(_, list)| list).collect()
}

#[test]
fn core_threads_run_anywhere_unless_pinned() {
    let all = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string())
        })
        .expect("our own CPU list");
    let free = Node::start("");
    assert_eq!(core_thread_cpus(free.pid()), vec![all.clone(), all.clone()]);

    // Pinned: each core on one CPU of those the process may use, a different one each.
    let pinned = Node::start("[server]\npin_cores = true");
    let lists = core_thread_cpus(pinned.pid());
    let allowed = cpu_list(&all);
    let mut chosen: Vec<usize> = lists
        .iter()
        .map(|l| match cpu_list(l)[..] {
            [cpu] => cpu,
            _ => panic!("a pinned core may run on {l}"),
        })
        .collect();
    assert!(
        chosen.iter().all(|c| allowed.contains(c)),
        "{lists:?} not in {all}"
    );
    chosen.dedup();
    assert_eq!(chosen.len(), 2.min(allowed.len()), "{lists:?}");
}

/// The CPUs of a list such as `0-3,6`.
fn cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(lo.trim().parse::<usize>().unwrap()..=hi.trim().parse::<usize>().unwrap());
    }
    cpus
}
