//! The reader task of one WebSocket connection, for as long as it lives.
//!
//! The task owns no buffer: it waits for readability (or for its core to
//! close the connection), then the core reads into its scratch buffer and
//! feeds the connection's codec. When the core closes the connection it
//! wakes the task, which finds the connection gone from its slot, lingers
//! briefly to let the close handshake finish and then drops the socket.

use std::future::{poll_fn, Future};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::Poll;

use monoio::net::TcpStream;

use crate::core::{CoreRef, LINGER};
use crate::op::ConnAddr;
use crate::socket;
use crate::ws::CloseReason;

/// Most a closing connection reads (and discards) while it lingers.
pub const LINGER_BYTES: usize = 1 << 20;

/// Keeps the core's count of live WebSocket tasks (graceful shutdown waits
/// for it to reach zero).
struct TaskGuard(CoreRef);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.try_borrow_mut() {
            c.ws_tasks -= 1;
        }
    }
}

/// The connection's steady state, for as long as it lives: wait, read,
/// feed. Kept small (it is a good part of an idle connection's memory):
/// it holds the core once (in its guard), and everything it needs only at
/// the end is boxed.
pub async fn session(core: CoreRef, stream: Rc<TcpStream>, addr: ConnAddr) {
    let guard = TaskGuard(core);
    let core = &guard.0;
    let fd = stream.as_raw_fd();
    loop {
        match readable_or_closed(core, &stream, addr).await {
            Wake::Closed => break,
            Wake::Failed => core.borrow_mut().close_conn(addr, CloseReason::Error, None),
            Wake::Readable => {
                let mut c = core.borrow_mut();
                match c.recv(fd) {
                    Ok(0) => c.close_conn(addr, CloseReason::ClientClosed, None),
                    Ok(n) => c.on_ws_input(addr, n),
                    Err(e) if would_block(&e) => {}
                    Err(_) => c.close_conn(addr, CloseReason::Error, None),
                }
                c.flush();
            }
        }
    }
    Box::pin(socket::linger(&stream, LINGER_BYTES, LINGER)).await;
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

enum Wake {
    Readable,
    Closed,
    Failed,
}

/// Waits for readability, or for the core to close the connection (it then
/// wakes the waker left in `Conn::reader`).
async fn readable_or_closed(core: &CoreRef, stream: &TcpStream, addr: ConnAddr) -> Wake {
    let mut readable = std::pin::pin!(stream.readable(false));
    poll_fn(|cx| {
        {
            let mut c = core.borrow_mut();
            let Some(conn) = c.conns.get_mut(addr) else {
                return Poll::Ready(Wake::Closed);
            };
            if !conn
                .reader
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                conn.reader = Some(cx.waker().clone());
            }
        }
        match readable.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Wake::Readable),
            Poll::Ready(Err(_)) => Poll::Ready(Wake::Failed),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
