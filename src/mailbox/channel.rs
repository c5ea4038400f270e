//! A core's mailbox channel: many senders (every core, the etcd thread, the
//! signal thread), one receiving core.
//!
//! Why not flume's `recv_async`, which this replaces: its receive future
//! puts its wake-up hook back on the channel's waiting list on every poll
//! after a wake that found the queue empty, so under cross-core load the
//! list fills with copies of one hook, each copy's wake causes another poll
//! and another copy (flume issue #182). In `scripts/bench-vs-nchan.sh`,
//! workload (b), a core spun at 100 % and grew to 24 GiB until the kernel
//! killed the node. Here nothing is registered per poll: a lock-free queue
//! (crossbeam's `SegQueue`) and one `AtomicWaker`. A send is a push and a
//! wake that costs a syscall only when the core is parked waiting for mail;
//! while the core is busy, senders touch two atomics.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam_queue::SegQueue;

struct Shared<T> {
    queue: SegQueue<T>,
    waker: AtomicWaker,
    /// The receiver is gone: what is sent is dropped, so that a reply it
    /// carries tells its asker at once.
    closed: AtomicBool,
}

/// The receiving core stopped.
#[derive(Debug, thiserror::Error)]
#[error("the core has stopped")]
pub struct Closed;

/// A new channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: SegQueue::new(),
        waker: AtomicWaker::new(),
        closed: AtomicBool::new(false),
    });
    (Sender(shared.clone()), Receiver(shared))
}

pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Sender<T> {
    /// Queues `msg` and wakes the receiving core if it waits for mail.
    pub fn send(&self, msg: T) -> Result<(), Closed> {
        let shared = &*self.0;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        shared.queue.push(msg);
        if shared.closed.load(Ordering::Acquire) {
            // The receiver went while we pushed: drop what it left behind.
            shared.drop_all();
            return Err(Closed);
        }
        shared.waker.wake();
        Ok(())
    }
}

/// The receiving end; one per core, used on that core's thread only.
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next message, if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        self.0.queue.pop()
    }

    /// The next message, waiting for one.
    pub async fn recv(&self) -> T {
        poll_fn(|cx| {
            if let Some(msg) = self.0.queue.pop() {
                return Poll::Ready(msg);
            }
            self.0.waker.register(cx.waker());
            // A message pushed before the registration woke nobody.
            match self.0.queue.pop() {
                Some(msg) => Poll::Ready(msg),
                None => Poll::Pending,
            }
        })
        .await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.drop_all();
    }
}

impl<T> Shared<T> {
    fn drop_all(&self) {
        while self.queue.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn messages_arrive_in_order_per_sender_and_all_of_them() {
        let (tx, rx) = channel::<(u8, u32)>();
        let senders: Vec<_> = (0..4u8)
            .map(|s| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..50_000 {
                        tx.send((s, i)).expect("open");
                    }
                })
            })
            .collect();
        let mut next = [0u32; 4];
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for _ in 0..200_000 {
                let (s, i) = rx.recv().await;
                assert_eq!(i, next[s as usize], "sender {s} out of order");
                next[s as usize] += 1;
            }
        });
        for s in senders {
            s.join().expect("sender");
        }
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn a_receiver_parked_for_mail_wakes_for_a_send_from_another_thread() {
        let (tx, rx) = channel::<u32>();
        let (done_tx, done_rx) = mpsc::channel();
        let core = std::thread::spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("runtime");
            let got = rt.block_on(async { rx.recv().await });
            done_tx.send(got).expect("report");
        });
        std::thread::sleep(Duration::from_millis(50));
        tx.send(7).expect("open");
        let got = done_rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(got.ok(), Some(7), "the parked core was not woken");
        core.join().expect("core");
    }

    #[test]
    fn sends_after_the_receiver_is_gone_fail_and_drop_their_message() {
        let (tx, rx) = channel::<mpsc::Sender<()>>();
        let (reply, answer) = mpsc::channel();
        tx.send(reply.clone()).expect("open");
        drop(rx);
        assert!(tx.send(reply).is_err());
        assert_eq!(
            answer.recv_timeout(Duration::from_secs(1)),
            Err(mpsc::RecvTimeoutError::Disconnected),
            "every reply was dropped: the asker knows"
        );
    }
}
