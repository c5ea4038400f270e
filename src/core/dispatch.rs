//! Reaching the other cores of this node: one mailbox hop, or none when
//! the target is this core.

use super::{Core, CoreRef};
use crate::mailbox::{reply_channel, CoreMsg, Reply};

/// Mailbox depth past which API requests are refused with 503 rather than
/// queued without bound behind an overloaded core.
const MAILBOX_HIGH_WATER: usize = 65_536;

/// The mailbox is over its high-water mark: the caller answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Core {
    /// Hands `msg` to core `target`: handled at once when it is this core,
    /// else through that core's mailbox. What a local message queues is
    /// written by the caller's next `flush` (the HTTP loop flushes once per
    /// batch of pipelined requests, so their pushes share one write per
    /// connection).
    pub fn to_core(this: &CoreRef, target: u8, msg: CoreMsg) -> Result<(), Busy> {
        let local = this.borrow().id == target;
        if local {
            this.borrow_mut().handle(msg);
            return Ok(());
        }
        let core = this.borrow();
        let mailbox = core.node.mailboxes.get(target as usize).ok_or(Busy)?;
        if mailbox.len() > MAILBOX_HIGH_WATER {
            return Err(Busy);
        }
        mailbox.send(msg).map_err(|_| Busy)
    }

    /// Sends one message to every core (built by `make` for each).
    pub fn to_every_core(this: &CoreRef, make: impl Fn() -> CoreMsg) -> Result<(), Busy> {
        let cores = this.borrow().node.cores();
        (0..cores).try_for_each(|c| Self::to_core(this, c as u8, make()))
    }

    /// Asks every core of this node and collects their answers.
    pub async fn ask_every_core<T>(
        this: &CoreRef,
        make: impl Fn(Reply<T>) -> CoreMsg,
    ) -> Result<Vec<T>, Busy> {
        let cores = this.borrow().node.cores();
        let mut pending = Vec::with_capacity(cores);
        for c in 0..cores {
            let (tx, rx) = reply_channel();
            Self::to_core(this, c as u8, make(tx))?;
            pending.push(rx);
        }
        let mut answers = Vec::with_capacity(cores);
        for rx in pending {
            answers.push(rx.recv_async().await.map_err(|_| Busy)?);
        }
        Ok(answers)
    }

    /// Like `to_every_core`, from inside the core: other cores by mailbox
    /// (never refused: internal notices must not be lost), this core
    /// directly.
    pub(super) fn tell_every_core(&mut self, make: impl Fn() -> CoreMsg) {
        let node = self.node.clone();
        for (i, mailbox) in node.mailboxes.iter().enumerate() {
            if i == self.id as usize {
                self.handle(make());
            } else {
                let _ = mailbox.send(make());
            }
        }
    }
}
