//! The reader task of one WebSocket connection, for as long as it lives.
//!
//! The task owns no buffer: it waits for readability (or for its core to
//! detach it), then the core reads into its scratch buffer and feeds the
//! connection's codec. When the core closes the connection it detaches the
//! task, which lingers briefly to let the close handshake finish and then
//! drops the socket.

use std::future::{poll_fn, Future};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::Poll;

use monoio::net::TcpStream;

use super::ConnSignal;
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
/// feed. Kept small (it is most of an idle connection's memory): everything
/// it needs only at the end is boxed.
pub async fn session(core: CoreRef, stream: Rc<TcpStream>, addr: ConnAddr, signal: Rc<ConnSignal>) {
    let _guard = TaskGuard(core.clone());
    let fd = stream.as_raw_fd();
    loop {
        match readable_or_detached(&stream, &signal).await {
            Wake::Detached => break,
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
    Detached,
    Failed,
}

async fn readable_or_detached(stream: &TcpStream, signal: &ConnSignal) -> Wake {
    let mut readable = std::pin::pin!(stream.readable(false));
    poll_fn(|cx| {
        if signal.is_detached() {
            return Poll::Ready(Wake::Detached);
        }
        signal.register(cx.waker());
        match readable.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Wake::Readable),
            Poll::Ready(Err(_)) => Poll::Ready(Wake::Failed),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
