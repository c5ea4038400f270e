//! A webhook receiver: a small HTTP/1.1 server (keep-alive) on a free loopback port that
//! records every request and answers what the test tells it to. Dropping it stops its
//! threads and closes its sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

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

/// What the receiver answers to its n-th request (0-based), which is given too.
type Behaviour = dyn Fn(usize, &Hook) -> Option<u16> + Send + Sync;

pub struct Receiver {
    pub addr: String,
    hooks: Arc<Mutex<Vec<Hook>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Answers `status(n)` to request n; `None` = never answer (hang until dropped).
    pub fn start(status: impl Fn(usize) -> Option<u16> + Send + Sync + 'static) -> Receiver {
        Receiver::start_with(move |n, _| status(n))
    }

    /// Answers `status(n, request)` to request n (the request is recorded either way);
    /// `None` = never answer.
    pub fn start_with(
        status: impl Fn(usize, &Hook) -> Option<u16> + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().unwrap().to_string();
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let status: Arc<Behaviour> = Arc::new(status);
        let (seen, stopped) = (hooks.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (seen, status, stopped) = (seen.clone(), status.clone(), stopped.clone());
                std::thread::spawn(move || serve(stream, &seen, &*status, &stopped));
            }
        });
        Receiver { addr, hooks, stop }
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

    /// The events received so far (bodies as JSON).
    pub fn events(&self) -> Vec<Value> {
        self.hooks().iter().map(Hook::json).collect()
    }

    /// Waits (at most 10 s) until `pred` holds for the events received (bodies as JSON).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events();
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

    /// Waits until `event` (connect, disconnect, message) arrived for every one of
    /// `client_ids`; the events about those clients (events of other clients — a
    /// cluster's mesh probes, say — are left out).
    pub fn wait_for_each(&self, event: &str, client_ids: &[String]) -> Vec<Value> {
        let mine = |e: &Value| client_ids.iter().any(|id| e["clientId"] == json_str(id));
        let all = self.wait_for(
            &format!("a {event} event for each of {client_ids:?}"),
            |ev| {
                client_ids.iter().all(|id| {
                    ev.iter()
                        .any(|e| e["clientId"] == json_str(id) && e["event"] == event)
                })
            },
        );
        all.into_iter().filter(mine).collect()
    }
}

fn json_str(s: &str) -> Value {
    Value::String(s.to_string())
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Hook>>, status: &Behaviour, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut out = stream.try_clone().expect("clone receiver stream");
    let mut reader = BufReader::new(stream);
    loop {
        let hook = match read_request(&mut reader, stop) {
            Incoming::Request(h) => h,
            Incoming::Closed => return,
        };
        let answer = {
            let mut seen = seen.lock().unwrap();
            let answer = status(seen.len(), &hook);
            seen.push(hook);
            answer
        };
        let Some(code) = answer else {
            // Hang: hold the connection open, never answer, until the receiver is dropped.
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        };
        let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\nok");
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

enum Incoming {
    Request(Hook),
    Closed,
}

/// One line, waiting through read timeouts (used to notice `stop`) until it is complete.
fn read_line(reader: &mut BufReader<TcpStream>, stop: &AtomicBool, line: &mut String) -> bool {
    loop {
        match reader.read_line(line) {
            Ok(0) => return false,
            Ok(_) if line.ends_with('\n') => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Incoming {
    let mut line = String::new();
    if !read_line(reader, stop, &mut line) {
        return Incoming::Closed;
    }
    let Some(path) = line.split_whitespace().nth(1).map(str::to_string) else {
        return Incoming::Closed;
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if !read_line(reader, stop, &mut h) {
            return Incoming::Closed;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Incoming::Closed;
        };
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)));
    if reader.read_exact(&mut body).is_err() {
        return Incoming::Closed;
    }
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)));
    Incoming::Request(Hook {
        path,
        headers,
        body,
    })
}
