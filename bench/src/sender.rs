//! The client-message sender of a worker (`chat`): from Go and for the run's duration,
//! its connections send client messages, round-robin, each stamped with its send time
//! (the marker in its `reqId`, which the ack echoes, so that the subscriber side counts
//! the acks and their latency). At most `window` × open connections messages await
//! their ack; with a rate, sending is also paced like the HTTP publisher.

use crate::clock::mono_ns;
use crate::ipc::ChatSpec;
use crate::marker;
use crate::poller::Poller;
use crate::subscriber::Subscribers;
use shardcast::ws::frame::{self as wsframe, OP_TEXT};

pub struct Sender {
    spec: ChatSpec,
    start_ns: u64,
    end_ns: u64,
    /// Next connection to send on.
    next: usize,
    frames: Vec<u8>,
    pub sent: u64,
    pub first_send_ns: u64,
}

impl Sender {
    pub fn new(spec: ChatSpec, now: u64) -> Sender {
        let end_ns = now + spec.duration_ms * 1_000_000;
        Sender {
            spec,
            start_ns: now,
            end_ns,
            next: 0,
            frames: Vec::new(),
            sent: 0,
            first_send_ns: 0,
        }
    }

    /// The duration has passed: nothing more is sent.
    pub fn finished(&self, now: u64) -> bool {
        now >= self.end_ns
    }

    /// Sends what the window (given the `acked` messages) and the rate allow.
    pub fn pump(&mut self, subs: &mut Subscribers, poller: &Poller, acked: u64, now: u64) {
        if self.finished(now) {
            return;
        }
        let window = self.spec.window.max(1) as u64;
        let in_flight = self.sent.saturating_sub(acked);
        let mut budget = (window * subs.open_now()).saturating_sub(in_flight);
        if let Some(rate) = self.spec.rate {
            let due = (now.saturating_sub(self.start_ns) as f64 / 1e9 * rate) as u64 + 1;
            budget = budget.min(due.saturating_sub(self.sent));
        }
        let n = subs.count();
        let mut idle = 0;
        // The frames in `self.frames` (built for `built` messages, stamped `t`) until a
        // connection takes them.
        let (mut built, mut t) = (0, now);
        while budget > 0 && idle < n {
            let i = self.next % n;
            self.next = self.next.wrapping_add(1);
            let k = budget.min(window);
            if built != k {
                t = mono_ns();
                self.build(k, t);
                built = k;
            }
            if !subs.send(poller, i, &self.frames) {
                idle += 1;
                continue;
            }
            idle = 0;
            built = 0;
            if self.first_send_ns == 0 {
                self.first_send_ns = t;
            }
            self.sent += k;
            budget -= k;
        }
    }

    /// `k` client frames stamped `t`, into `self.frames`.
    fn build(&mut self, k: u64, t: u64) {
        self.frames.clear();
        let mut text = String::new();
        for _ in 0..k {
            text.clear();
            text.push_str(&self.spec.head);
            text.push_str(&marker::payload(t, marker::MARKER_LEN));
            text.push_str(&self.spec.tail);
            wsframe::client_frame(&mut self.frames, OP_TEXT, text.as_bytes(), [0; 4]);
        }
    }
}
