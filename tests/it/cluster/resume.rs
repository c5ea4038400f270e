//! Session resume in a cluster (docs/api.md §8): two nodes behind nginx running the
//! shipped `conf/nginx-cluster.example.conf` (addresses and port filled in), which routes
//! `resume=<node>.…` to the node that holds the session; a resume at the wrong node is a
//! new connection.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    api::assert_message_id,
    cluster::Cluster,
    node::{free_port, Node},
    raw_ws::Raw,
    SYS_A, WAIT,
};

const ON: &str = "[ws]\nresume_window = \"20s\"\n";

/// nginx, stopped on drop.
pub(super) struct Nginx {
    child: Child,
    pub(super) addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped example with the node of id `i` at `addrs[i - 1]` (the example's
/// 10.0.0.1<i>:7800), servers of absent nodes left out, listening on `listen`.
fn shipped_config(addrs: &[String], listen: &str) -> String {
    let shipped = include_str!("../../../conf/nginx-cluster.example.conf");
    let mut out = String::new();
    for line in shipped.lines() {
        let mut line = line.replace("listen 80;", &format!("listen {listen};"));
        let mut absent = false;
        for i in 1..=3 {
            let example = format!("10.0.0.1{i}:7800");
            if line.contains(&example) {
                match addrs.get(i - 1) {
                    Some(a) => line = line.replace(&example, a),
                    None => absent = true,
                }
            }
        }
        if absent && line.trim_start().starts_with("server ") {
            continue;
        }
        if absent {
            // `upstream shardcast_node_3 { server …; }` on one line: no server left.
            line = line.replace(
                &line[line.find("{ server").unwrap_or(line.len())..],
                "{ server 127.0.0.1:9; }",
            );
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// nginx running the shipped example, with the node of id `i` at `addrs[i - 1]`.
pub(super) fn start_nginx(addrs: &[String]) -> Nginx {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("shardcast.conf"),
        shipped_config(addrs, &listen),
    )
    .expect("write");
    let main = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
          fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
          include {d}/shardcast.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).expect("write");
    let child = Command::new(nginx_bin())
        .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
        .args(["-e", &format!("{d}/error.log")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (Debian package nginx) must be installed");
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(&listen).is_err() {
        let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "nginx did not listen: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        child,
        addr: listen,
        _dir: dir,
    }
}

fn nginx_bin() -> &'static str {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx")
}

/// The node id a node's resume tokens start with.
fn node_id(node: &Node) -> usize {
    let c = Raw::open(node, &format!("systemId={SYS_A}"));
    let token = c.token();
    let id = token.split('.').next().and_then(|n| n.parse().ok());
    id.unwrap_or_else(|| panic!("token without a node id: {token}"))
}

fn info(node: &Node, client_id: &str) -> Value {
    node.call(
        SYS_A,
        "/api/get_client_info",
        json!({ "clientId": client_id }),
    )
}

#[test]
fn resumes_through_the_shipped_nginx_config_reach_their_node() {
    let cluster = Cluster::start_with(2, ON);
    let mut addrs = vec![String::new(); 2];
    for n in &cluster.nodes {
        let id = node_id(n);
        assert!(
            (1..=2).contains(&id),
            "node ids 1 and 2 are allocated: {id}"
        );
        addrs[id - 1] = n.addr().to_string();
    }
    let nginx = start_nginx(&addrs);

    // least_conn spreads the connections over both nodes.
    let clients: Vec<Raw> = (0..6)
        .map(|_| Raw::open_at(&nginx.addr, &format!("systemId={SYS_A}")))
        .collect();
    let mut sessions = Vec::new();
    for c in clients {
        sessions.push((c.client_id(), c.resume_query(SYS_A, "")));
        c.reset();
    }
    let nodes: Vec<u64> = sessions
        .iter()
        .map(|(id, _)| info(&cluster[0], id)["node"].as_u64().expect("node"))
        .collect();
    assert!(
        nodes.contains(&1) && nodes.contains(&2),
        "on both nodes: {nodes:?}"
    );
    for (id, _) in &sessions {
        let deadline = Instant::now() + WAIT;
        while info(&cluster[1], id)["detached"] != json!(true) {
            assert!(Instant::now() < deadline, "{id} not detached");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for (i, (id, query)) in sessions.iter().enumerate() {
        let body = json!({"clientId": id, "msg": "gap"});
        let sent = cluster[i % 2].call(SYS_A, "/api/send_to_client", body);
        let mid = assert_message_id(&sent["messageId"]);
        let mut back = Raw::open_at(&nginx.addr, query);
        assert_eq!(
            back.welcome["data"]["resumed"],
            json!(true),
            "{}",
            back.welcome
        );
        assert_eq!(back.client_id(), *id);
        assert_eq!(back.ids(1), [mid], "the push of the gap");
    }

    // A resume at a node that does not hold the session is a new connection.
    let c = Raw::open(&cluster[0], &format!("systemId={SYS_A}"));
    let (id, query) = (c.client_id(), c.resume_query(SYS_A, ""));
    let owner = info(&cluster[0], &id)["node"].as_u64().expect("node") as usize;
    c.reset();
    let other = cluster.nodes.iter().find(|n| n.addr() != addrs[owner - 1]);
    let other = other.expect("the other node");
    let wrong = Raw::open(other, &query);
    assert_eq!(wrong.welcome["data"]["resumed"], json!(false));
    assert_ne!(wrong.client_id(), id);
}
