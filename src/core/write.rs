//! Writing to the connections of a core.
//!
//! Writes are batched: `enqueue` only appends to a connection's queue and
//! marks it dirty; a flush (once per mailbox batch, batch of API calls or
//! read) sends the other cores' outboxes, writes the links, and writes the
//! dirty queues with one write each, at most [`FLUSH_SLICE`] at once. What
//! is left is written by a flusher task of the core, a slice at a time, and
//! between two slices the core takes in what has arrived: requests, mailbox
//! batches, link frames; a slice ends early when mail comes. An API answer
//! or a mailbox batch flushes with `flush_later`, which leaves even the first
//! slice to the flusher task: the answer, and the tasks the batch's replies
//! woke, go before 256 writes. When publishes come faster than the core can
//! write, the queues not written yet take the next frames too, and one
//! `sendmsg` carries several (docs/architecture.md, performance rule 8); at
//! light load a push still leaves in the same turn of the runtime, with no
//! timer. A queue that keeps growing before any of that comes — through a
//! long run of fan-outs, such as the notices of a crowd cut at once — is
//! written as it grows, every [`WRITE_STEP`].

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use monoio::net::TcpStream;

use super::conn::Conn;
use super::index::Audience;
use super::{Core, LINGER};
use crate::op::ConnAddr;
use crate::socket;
use crate::ws::frame::close_frame;
use crate::ws::{CloseReason, Push};

/// Connections written in one run of the loop before the core looks at
/// its sockets again.
pub const FLUSH_SLICE: usize = 256;

/// Writes between two looks at the mailbox during a slice (a look is two
/// atomic loads; 16 let a send to another core's stream wait long enough to
/// halve a one-in-flight publisher's rate in some runs, `bench-history.sh`).
const MAIL_CHECK: usize = 4;

/// What the core's writing keeps between two flushes.
pub(super) struct Writer {
    /// Connections with queued frames, oldest first, written by `flush` in
    /// slices.
    dirty: VecDeque<ConnAddr>,
    /// A flusher task is writing the rest of `dirty`, a slice at a time.
    flushing: bool,
    /// Connections to close once the fan-out under way is over.
    to_close: Vec<(ConnAddr, CloseReason)>,
    /// A socket that is always writable: waiting on it lets the runtime
    /// collect I/O completions between two slices (`let_others_in`).
    yield_socket: Option<YieldSocket>,
}

impl Writer {
    pub(super) fn new() -> Self {
        Writer {
            dirty: VecDeque::new(),
            flushing: false,
            to_close: Vec::new(),
            yield_socket: monoio::net::UnixStream::pair().ok().map(Rc::new),
        }
    }
}

/// A queue holding frames not written yet is written at once each time it
/// passes another multiple of this (or of a quarter of
/// `ws.send_queue_bytes`, if smaller), rather than only at the next `flush`
/// or at the bound (`queue`).
pub const WRITE_STEP: usize = 64 * 1024;

impl Core {
    /// The socket that lets the core's other tasks in (`let_others_in`).
    pub fn yield_socket(&self) -> Option<YieldSocket> {
        self.writer.yield_socket.clone()
    }

    /// Queues `push` on every connection of `audience`, in the form each
    /// socket takes; returns how many.
    /// The members are walked in place, not copied: nothing here closes a
    /// connection (a slow consumer is only marked to close, and
    /// `close_marked` closes it after the walk), so the index cannot change under the walk — it is
    /// taken out of the core for the walk's length all the same. A push or
    /// notice goes into the replay log once, whatever its audience.
    pub(super) fn fan_out(&mut self, audience: Audience<'_>, push: &Push) -> usize {
        self.fan_out_except(audience, push, &[])
    }

    /// [`Core::fan_out`] to every member but those in `skip` (connections
    /// recovering the stream of a group: their replay holds this push).
    pub(super) fn fan_out_except(
        &mut self,
        audience: Audience<'_>,
        push: &Push,
        skip: &[ConnAddr],
    ) -> usize {
        let started = std::time::Instant::now();
        let now = self.clock_us();
        let index = std::mem::take(&mut self.index);
        let (mut reached, mut queued) = (0, 0);
        // Kept for resumes when it reaches someone on this core.
        let mut kept = None;
        for slot in index.members(audience) {
            if let Some((addr, conn)) = self.conns.at_mut(slot) {
                if !skip.is_empty() && skip.contains(&addr) {
                    continue;
                }
                let frame = push.for_socket(conn.out.deflate).clone();
                if let Some(id) = kept {
                    conn.newest_id = id;
                } else if reached == 0 {
                    kept = self.log_fan_out(audience, push);
                    self.note_newest(addr, kept);
                }
                queued += u64::from(self.queue(addr, frame, now));
                reached += 1;
            }
        }
        self.index = index;
        let m = self.metrics();
        m.pushed.fetch_add(queued, Relaxed);
        m.fanout_duration(started.elapsed());
        reached
    }

    /// The push of the text frame `frame` made on this core
    /// (`Node::encode`).
    pub fn encode(&self, frame: Bytes) -> Push {
        self.node.encode(frame, usize::from(self.id))
    }

    /// Appends `push` to the connection's queue in the form its socket
    /// takes (`queue`).
    pub(super) fn enqueue_push(&mut self, addr: ConnAddr, push: &Push) {
        let Some(conn) = self.conns.get(addr) else {
            return;
        };
        let frame = push.for_socket(conn.out.deflate).clone();
        self.enqueue(addr, frame);
    }

    /// Appends `frame` to the connection's queue (`queue`).
    pub fn enqueue(&mut self, addr: ConnAddr, frame: Bytes) {
        let now = self.clock_us();
        if self.queue(addr, frame, now) {
            self.metrics().pushed.fetch_add(1, Relaxed);
        }
    }

    /// Appends `frame` to the connection's queue; a detached connection
    /// takes nothing (what it misses is in the replay log). A connection
    /// whose queue would pass `ws.send_queue_bytes` even after writing what
    /// its socket takes now is marked to close as a slow consumer (closed by
    /// `close_marked`, not here: closing sends notices, which are fan-outs
    /// themselves): only
    /// bytes the client is not reading count, not a burst this core has not
    /// written yet. A frame on an empty queue always fits (`api.max_message`
    /// bounds it). A connection marked to close takes nothing more. `now` is the
    /// core's microsecond clock, read once per fan-out.
    ///
    /// A queue that already held frames is also written each time it passes
    /// another [`WRITE_STEP`], even while a writer task waits (that task
    /// cannot run before the core is done). A long run of fan-outs —
    /// `close_marked` closing a crowd, each close a notice to the group — writes nothing
    /// until it ends: a member's queue left to grow to the bound there stays
    /// at the bound for the rest of the run, each write only what its socket
    /// takes at that moment, and the member is cut the first time it has
    /// not read that burst before the next comes due — however little it
    /// was, and however short a time later — rather than for falling
    /// `ws.send_queue_bytes` behind (issue 22, `tests/it/fault/cascade.rs`).
    /// A frame on an empty queue is left to `flush`.
    ///
    /// True when the frame was queued; the caller counts it
    /// (`shardcast_messages_pushed_total`) — a fan-out once for all its
    /// members, as an atomic add in this loop would wait, at each member,
    /// for the stores to the members before it to reach the cache.
    #[must_use]
    fn queue(&mut self, addr: ConnAddr, frame: Bytes, now: NonZeroU32) -> bool {
        let Some(conn) = self.conns.get_mut(addr).filter(|c| !c.to_close) else {
            return false;
        };
        if !conn.out.has_socket() {
            return false;
        }
        if self.over_limit(addr, frame.len()) {
            self.write_queue(addr, true);
            if self.over_limit(addr, frame.len()) {
                let queued = self.conns.get(addr).map_or(0, |c| c.out.len());
                let dropped = queued as u64 + 1;
                self.metrics().dropped.fetch_add(dropped, Relaxed);
                self.mark_to_close(addr, CloseReason::SlowConsumer);
                return false;
            }
        }
        let Some(conn) = self.conns.get_mut(addr) else {
            return false;
        };
        let before = conn.out.bytes();
        conn.out.push(frame);
        let after = conn.out.bytes();
        if conn.dirty_since.is_none() {
            conn.dirty_since = Some(now);
            self.writer.dirty.push_back(addr);
        }
        if before > 0 {
            let step = WRITE_STEP
                .min(self.node.config.ws.send_queue_bytes / 4)
                .max(1);
            if before / step != after / step {
                self.write_queue(addr, true);
            }
        }
        true
    }

    /// Marks a connection to be closed by the next `close_marked`: it cannot
    /// be closed now, in the middle of a fan-out's walk of the index.
    pub(super) fn mark_to_close(&mut self, addr: ConnAddr, reason: CloseReason) {
        if let Some(conn) = self.conns.get_mut(addr) {
            if !conn.to_close {
                conn.to_close = true;
                self.writer.to_close.push((addr, reason));
            }
        }
    }

    /// Closes the connections marked to close. Their offline notices may
    /// mark more (members whose queues they overflow): those are closed in
    /// the same loop, one after another, never by recursion.
    pub(super) fn close_marked(&mut self) {
        while let Some((addr, reason)) = self.writer.to_close.pop() {
            self.close_conn(addr, reason, None);
        }
    }

    fn over_limit(&self, addr: ConnAddr, len: usize) -> bool {
        let limit = self.node.config.ws.send_queue_bytes;
        self.conns
            .get(addr)
            .is_some_and(|c| c.out.would_exceed(len, limit))
    }

    /// Sends what other cores and the links wait for, writes the oldest
    /// [`FLUSH_SLICE`] dirty connections, one write each, and leaves the
    /// rest to the flusher task: for a caller whose answer is among those
    /// writes (an upgrade's 101, a client message's ack).
    pub fn flush(&mut self) {
        self.write_round();
        self.keep_flushing(true);
    }

    /// Sends what other cores and the links wait for, and leaves every
    /// dirty connection to the flusher task: in this turn of the runtime,
    /// after the task that called this and those already woken — an API
    /// answer, a task woken by a reply — so an answer never waits for 256
    /// writes.
    pub fn flush_later(&mut self) {
        self.send_pending();
        self.keep_flushing(false);
    }

    /// Starts the flusher task when dirty connections are left and none
    /// runs; `wrote`: a slice was just written, so the task lets the core's
    /// I/O in before its first.
    fn keep_flushing(&mut self, wrote: bool) {
        if !self.writer.dirty.is_empty() && !self.writer.flushing {
            self.writer.flushing = true;
            let (this, yield_socket) = (self.this.clone(), self.writer.yield_socket.clone());
            monoio::spawn(flusher(this, yield_socket, wrote));
        }
    }

    /// A flusher task is writing what `flush` left: dirty connections wait
    /// for it.
    pub fn flushing(&self) -> bool {
        self.writer.flushing
    }

    /// One slice of writing, with what must go out before it, and again
    /// after it when the slice marked connections to close.
    fn write_round(&mut self) {
        self.send_pending();
        self.write_slice();
        if !self.writer.to_close.is_empty() {
            self.send_pending();
        }
    }

    /// Sends everything pending but the connections' queues: closes the
    /// connections marked to close, hands the other cores what this core has
    /// for them (`dispatch`), and writes the links.
    fn send_pending(&mut self) {
        self.close_marked();
        self.send_outboxes();
        self.write_links();
    }

    /// Writes the oldest [`FLUSH_SLICE`] dirty connections; fewer when
    /// mail comes meanwhile (looked at every [`MAIL_CHECK`] writes): a
    /// request another core waits on — a send to number, its answer — is
    /// taken in after the writes under way, not after the whole slice.
    fn write_slice(&mut self) {
        for n in 0..FLUSH_SLICE {
            if n % MAIL_CHECK == MAIL_CHECK - 1 && self.mail_came() {
                return;
            }
            let Some(addr) = self.writer.dirty.pop_front() else {
                return;
            };
            self.prefetch_next_writes();
            self.write_conn(addr);
        }
    }

    /// Asks the CPU for what the next three writes read, while this one is
    /// in the kernel, one step of the chain each: the next one's first
    /// frame, the state of the one after it, and the slot entry of the
    /// third (which points to its state). Between two writes of a slice lies
    /// a syscall, which leaves little of a connection in the CPU's caches,
    /// so the CPU cannot overlap one connection's cache misses with
    /// another's as it does in a fan-out; each step here reads only what the
    /// step before brought in one write earlier, so none of them waits
    /// (asking for the state of the one after next from its slot, not yet
    /// brought in, stalled a paced write: `perf annotate` of `write_slice`).
    fn prefetch_next_writes(&self) {
        let mut next = self.writer.dirty.iter();
        if let Some(frame) = next
            .next()
            .and_then(|&a| self.conns.get(a))
            .and_then(|c| c.out.front())
        {
            prefetch(frame);
        }
        if let Some(c) = next.next().and_then(|&a| self.conns.get(a)) {
            prefetch(c);
        }
        if let Some(entry) = next.next().and_then(|&a| self.conns.entry_ptr(a)) {
            prefetch(entry);
        }
    }

    /// Writes the connection's queue now, as far as its socket takes it —
    /// unless a writer task already waits for the socket to drain. A queue
    /// written out in full has its wait timed: from its first frame to this
    /// write (`shardcast_write_wait_seconds`).
    pub(super) fn write_conn(&mut self, addr: ConnAddr) {
        self.write_queue(addr, false);
    }

    /// Writes the connection's queue now; `even_waiting`: also when a writer
    /// task waits for the socket. A queue about to pass
    /// `ws.send_queue_bytes` is tried this way before its connection is
    /// judged slow: the socket may have drained long ago while its writer
    /// task waited for a core busy with a cascade of notices.
    fn write_queue(&mut self, addr: ConnAddr, even_waiting: bool) {
        let Some(conn) = self.conns.get_mut(addr) else {
            return;
        };
        let since = conn.dirty_since.take();
        let waiting = conn.write_waiting;
        if !conn.out.has_socket() || (waiting && !even_waiting) {
            return;
        }
        let written = loop {
            match conn.out.write() {
                Ok(_) if conn.out.is_empty() => break Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        match written {
            Ok(()) => {
                if let Some(since) = since {
                    let waited = self.clock_us().get().wrapping_sub(since.get());
                    let waited = std::time::Duration::from_micros(u64::from(waited));
                    self.metrics().write_wait(waited);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(stream) = conn.stream.clone().filter(|_| !waiting) {
                    conn.write_waiting = true;
                    self.spawn_writer(addr, stream);
                }
            }
            Err(_) => self.mark_to_close(addr, CloseReason::Error),
        }
    }

    /// Waits for the socket to drain, then writes the rest of the queue —
    /// unless the connection has another socket by then (a resume took it
    /// over) or none (detached).
    fn spawn_writer(&self, addr: ConnAddr, stream: Rc<TcpStream>) {
        let this = self.this.clone();
        monoio::spawn(async move {
            let ok = stream.writable(false).await.is_ok();
            let Some(this) = this.upgrade() else { return };
            let mut core = this.borrow_mut();
            let Some(conn) = core.conns.get_mut(addr) else {
                return;
            };
            if !conn.stream.as_ref().is_some_and(|s| Rc::ptr_eq(s, &stream)) {
                return;
            }
            conn.write_waiting = false;
            if ok {
                core.write_conn(addr);
            } else {
                core.mark_to_close(addr, CloseReason::Error);
            }
            core.flush();
        });
    }

    /// Sends what is still queued plus the close frame, then half-closes.
    /// A slow consumer or broken socket (no code) is shut down at once.
    pub(super) fn finish_writes(
        &mut self,
        conn: &mut Conn,
        stream: &Rc<TcpStream>,
        code: Option<u16>,
    ) {
        let fd = stream.as_raw_fd();
        let Some(code) = code else {
            socket::shutdown(fd, libc::SHUT_RDWR);
            return;
        };
        conn.out.push(close_frame(code));
        let stream = stream.clone();
        let mut rest = std::mem::take(&mut conn.out);
        rest.set_socket(fd);
        monoio::spawn(async move {
            let drain = async {
                while !rest.is_empty() {
                    match rest.write() {
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

/// Writes the dirty connections `flush` left, a slice at a time; between
/// two slices the core takes in whatever has arrived, so that the frames it
/// queues join the queues still waiting.
async fn flusher(
    core: std::rc::Weak<std::cell::RefCell<Core>>,
    yield_socket: Option<YieldSocket>,
    wrote: bool,
) {
    if wrote {
        let_others_in(yield_socket.as_ref()).await;
    }
    loop {
        {
            let Some(core) = core.upgrade() else { return };
            let mut c = core.borrow_mut();
            c.write_round();
            if c.writer.dirty.is_empty() {
                c.writer.flushing = false;
                return;
            }
        }
        let_others_in(yield_socket.as_ref()).await;
    }
}

/// Asks the CPU to bring the cache line at `at` in, without waiting for
/// it: a hint, which reads nothing and changes nothing.
fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no effect on memory or on the program's state,
    // whatever the address, and SSE is in every x86-64 CPU.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// A socket that is always writable (`Core::yield_socket`).
pub type YieldSocket = Rc<(monoio::net::UnixStream, monoio::net::UnixStream)>;

/// Lets the core's other tasks and its I/O in before going on: to the back
/// of the run queue, then a readiness wait on `yield_socket` that completes at
/// once — under io_uring the runtime collects completions only when no task
/// is ready, and monoio has no task budget, so a task that always has work
/// (a flusher, a mailbox under a steady stream) would otherwise keep the
/// sockets, the heartbeat and the accepts waiting.
pub async fn let_others_in(yield_socket: Option<&YieldSocket>) {
    YieldNow(false).await;
    if let Some(n) = yield_socket {
        let _ = n.0.writable(false).await;
    }
}

/// Pending once, woken at once: goes to the back of the run queue.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
