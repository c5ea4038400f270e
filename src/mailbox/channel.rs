//! A core's mailbox channel: many senders (every core, the etcd thread, the
//! signal thread), one receiving core.
//!
//! Why a channel of our own: a receiver that registers its wake-up hook
//! anew on every poll (flume's `recv_async` does, after a wake that found
//! the queue empty: flume issue #182) fills the waiting list with copies
//! of one hook under cross-core load, and each copy's wake causes another
//! poll and another copy: the core spins and its memory grows without
//! bound. Here nothing is registered per poll: a lock-free queue
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

    /// Whether no message is queued now.
    pub fn is_empty(&self) -> bool {
        self.0.queue.is_empty()
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
    use std::future::Future;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

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

    /// Runs `fut` on this thread as a parked core would: polled once, then
    /// again only after its waker was woken. No wake-up by `deadline` means
    /// one was lost: `None`. Each call has a waker of its own, so a wake
    /// meant for an earlier call cannot stand in for a lost one.
    fn block_on_woken<F: Future>(fut: F, deadline: Instant) -> Option<F::Output> {
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::Release);
            }
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            flag.0.store(false, Ordering::Release);
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return Some(out);
            }
            // Spinning, not parking: the other side answers within
            // nanoseconds, which is what opens the window between a
            // receiver's first look at the queue and its registration.
            let mut spins = 0u32;
            while !flag.0.load(Ordering::Acquire) {
                spins = spins.saturating_add(1);
                if spins < 1_000 {
                    std::hint::spin_loop();
                    continue;
                }
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::yield_now();
            }
        }
    }

    /// Two threads, each waiting in `recv` for the other's message, many
    /// rounds. A send that lands after the receiver found the queue empty
    /// but before it registered its waker wakes nobody; without the second
    /// look at the queue after registering, that round never ends (removing
    /// it makes this test fail within some thousands of rounds).
    #[test]
    fn a_ping_pong_between_two_threads_never_loses_a_wake_up() {
        const ROUNDS: u32 = 100_000;
        /// Longest a side waits for one message (the other answers at once).
        const PATIENCE: Duration = Duration::from_secs(5);
        /// One side: sends round n (the server side: after receiving it),
        /// then busy-waits a number of steps that changes from round to
        /// round — shifting it against the other side so that the other's
        /// answer falls at every point of its window — then waits for the
        /// next message.
        fn side(
            name: &str,
            serves: bool,
            steps: fn(u32) -> u32,
            mail: Receiver<u32>,
            peer: Sender<u32>,
        ) -> Result<(), String> {
            let recv = |round: u32| {
                let deadline = Instant::now() + PATIENCE;
                match block_on_woken(mail.recv(), deadline) {
                    Some(got) if got == round => Ok(()),
                    Some(got) => Err(format!("{name} got {got} in round {round}")),
                    None => Err(format!("{name} was never woken in round {round}")),
                }
            };
            for round in 0..ROUNDS {
                if serves {
                    recv(round)?;
                }
                peer.send(round).map_err(|e| format!("{name}: {e}"))?;
                for _ in 0..steps(round) {
                    std::hint::spin_loop();
                }
                if !serves {
                    recv(round)?;
                }
            }
            Ok(())
        }
        let (to_a, a_mail) = channel::<u32>();
        let (to_b, b_mail) = channel::<u32>();
        let b = std::thread::spawn(move || side("B", true, |n| (n * 7 + 3) % 199, b_mail, to_a));
        // When one side is stuck, the other's wait ends at its deadline too.
        let a = side("A", false, |n| n % 211, a_mail, to_b);
        let b = b.join().expect("B panicked");
        assert_eq!(a.and(b), Ok(()), "a wake-up was lost");
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
