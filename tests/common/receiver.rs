//! A webhook receiver for the tests: a small HTTP/1.1 server (keep-alive) on a free
//! loopback port that records every request and answers what the test tells it to.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Hook {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the receiver answers to its n-th request (0-based).
type Behaviour = dyn Fn(usize) -> Option<u16> + Send + Sync;

pub struct Receiver {
    pub addr: String,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl Receiver {
    /// Answers `status(n)` to request n; `None` = never answer (hang).
    pub fn start(status: impl Fn(usize) -> Option<u16> + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().unwrap().to_string();
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let status: Arc<Behaviour> = Arc::new(status);
        let seen = hooks.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, status) = (seen.clone(), status.clone());
                std::thread::spawn(move || serve(stream, &seen, &*status));
            }
        });
        Receiver { addr, hooks }
    }

    pub fn ok() -> Receiver {
        Receiver::start(|_| Some(200))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the events received (bodies as JSON).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events: Vec<Value> = self.hooks().iter().map(Hook::json).collect();
            if pred(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: {what} not seen in 10 s; got {events:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The events about `client_id` (after waiting for `n` of them).
    pub fn events_of(&self, client_id: &str, n: usize) -> Vec<Value> {
        let of = |e: &Value| e["clientId"] == client_id;
        let all = self.wait_for(&format!("{n} events of {client_id}"), |ev| {
            ev.iter().filter(|e| of(e)).count() >= n
        });
        all.into_iter().filter(of).collect()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Hook>>, status: &Behaviour) {
    let mut out = stream.try_clone().expect("clone receiver stream");
    let mut reader = BufReader::new(stream);
    loop {
        let Some(hook) = read_request(&mut reader) else {
            return;
        };
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push(hook);
            seen.len() - 1
        };
        let Some(code) = status(n) else {
            // Hang: hold the connection open, never answer.
            std::thread::sleep(Duration::from_secs(120));
            return;
        };
        let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\nok");
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Hook> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Hook {
        path,
        headers,
        body,
    })
}
