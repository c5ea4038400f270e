//! Writing to the connections of a core.
//!
//! Writes are batched: `enqueue` only appends to a connection's queue and
//! marks it dirty; `flush` (called once per mailbox batch, API call or read)
//! writes every dirty queue with one `sendmsg` each, then the links.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use monoio::net::TcpStream;

use super::conn::Conn;
use super::{Core, LINGER};
use crate::op::ConnAddr;
use crate::socket;
use crate::ws::frame::close_frame;
use crate::ws::CloseReason;

impl Core {
    /// Queues `frame` on every slot. The slot list is collected first so the
    /// index is not borrowed while a slow consumer is being removed from it.
    pub(super) fn fan_out(&mut self, slots: &[u32], frame: &Bytes) {
        for &slot in slots {
            if let Some((addr, _)) = self.conns.at_mut(slot) {
                self.enqueue(addr, frame.clone());
            }
        }
    }

    /// Appends `frame` to the connection's queue. A connection whose queue
    /// would pass `ws.send_queue_bytes` even after writing what its socket
    /// takes now is closed as a slow consumer: only bytes the client is not
    /// reading count, not a burst this core has not written yet. A frame on
    /// an empty queue always fits (`api.max_message` bounds it).
    pub fn enqueue(&mut self, addr: ConnAddr, frame: Bytes) {
        if self.over_limit(addr, frame.len()) {
            self.flush_conn(addr);
            if self.over_limit(addr, frame.len()) {
                let queued = self.conns.get(addr).map_or(0, |c| c.out.len());
                let dropped = queued as u64 + 1;
                self.metrics().dropped.fetch_add(dropped, Relaxed);
                self.close_conn(addr, CloseReason::SlowConsumer, None);
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(addr) else {
            return;
        };
        conn.out.push(frame);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(addr);
        }
        self.metrics().pushed.fetch_add(1, Relaxed);
    }

    fn over_limit(&self, addr: ConnAddr, len: usize) -> bool {
        let limit = self.node.config.ws.send_queue_bytes;
        self.conns
            .get(addr)
            .is_some_and(|c| c.out.would_exceed(len, limit))
    }

    /// Writes every dirty connection's and link's queue, one `sendmsg` each.
    pub fn flush(&mut self) {
        self.flush_links();
        let mut dirty = std::mem::take(&mut self.dirty);
        for &addr in &dirty {
            self.flush_conn(addr);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn flush_conn(&mut self, addr: ConnAddr) {
        let Some(conn) = self.conns.get_mut(addr) else {
            return;
        };
        conn.dirty = false;
        if conn.write_waiting {
            return;
        }
        let fd = conn.stream.as_raw_fd();
        loop {
            match conn.out.write_to(fd) {
                Ok(_) => {
                    if conn.out.is_empty() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    conn.write_waiting = true;
                    let stream = conn.stream.clone();
                    self.spawn_writer(addr, stream);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close_conn(addr, CloseReason::Error, None);
                    return;
                }
            }
        }
    }

    /// Waits for the socket to drain, then writes the rest of the queue.
    fn spawn_writer(&self, addr: ConnAddr, stream: Rc<TcpStream>) {
        let this = self.this.clone();
        monoio::spawn(async move {
            let ok = stream.writable(false).await.is_ok();
            let Some(this) = this.upgrade() else { return };
            let mut core = this.borrow_mut();
            let Some(conn) = core.conns.get_mut(addr) else {
                return;
            };
            conn.write_waiting = false;
            if ok {
                core.flush_conn(addr);
            } else {
                core.close_conn(addr, CloseReason::Error, None);
            }
        });
    }

    /// Sends what is still queued plus the close frame, then half-closes.
    /// A slow consumer or broken socket (no code) is shut down at once.
    pub(super) fn finish_writes(&mut self, conn: &mut Conn, code: Option<u16>) {
        let fd = conn.stream.as_raw_fd();
        let Some(code) = code else {
            socket::shutdown(fd, libc::SHUT_RDWR);
            return;
        };
        conn.out.push(close_frame(code));
        let stream = conn.stream.clone();
        let mut rest = std::mem::take(&mut conn.out);
        monoio::spawn(async move {
            let drain = async {
                while !rest.is_empty() {
                    match rest.write_to(fd) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if stream.writable(false).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            };
            let _ = monoio::time::timeout(LINGER, drain).await;
            socket::shutdown(fd, libc::SHUT_WR);
        });
    }
}
