//! Reaching the other cores of this node: one mailbox hop, or none when
//! the target is this core.
//!
//! Messages nobody waits for go to an outbox per target core and leave at
//! the core's next `flush` (after each batch of requests, mailbox messages
//! or reads), as one mailbox message per core — so a batch of pipelined
//! publishes costs the other cores one hop and one wake-up, not one per
//! request. A message with a reply leaves at once, behind what the outbox
//! holds for that core (order per core is kept). A fan-out's frame is
//! copied once per receiving core (`CoreMsg::own_copy`), so that no
//! reference count is written by two cores per recipient.

use std::collections::VecDeque;
use std::rc::Rc;

use super::event::LocalEvent;
use super::{Core, CoreRef};
use crate::mailbox::{reply_channel, CoreMsg, MailboxRx, Reply};

/// Mailbox depth past which API requests are refused with 503 rather than
/// queued without bound behind an overloaded core.
const MAILBOX_HIGH_WATER: usize = 65_536;

/// How this core exchanges with the other cores of its node.
pub(super) struct Dispatch {
    /// Messages for each other core, sent at the next flush.
    outbox: Vec<Vec<CoreMsg>>,
    /// This core's mailbox, drained by its mailbox task and, before each
    /// API request, by `take_mail`.
    mailbox: Rc<MailboxRx>,
    /// Mail taken out of the mailbox and not handled yet, oldest first: the
    /// rest of a `CoreMsg::Batch` (`take_some_mail`).
    held: VecDeque<CoreMsg>,
    /// Fired by `CoreMsg::Shutdown`: the core's tasks stop.
    pub(super) shutdown: Rc<LocalEvent>,
}

impl Dispatch {
    pub(super) fn new(cores: usize, mailbox: Rc<MailboxRx>) -> Self {
        Dispatch {
            outbox: (0..cores).map(|_| Vec::new()).collect(),
            mailbox,
            held: VecDeque::new(),
            shutdown: Rc::new(LocalEvent::default()),
        }
    }
}

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
        Self::admit(this, [target])?;
        Self::to_core_admitted(this, target, msg);
        Ok(())
    }

    /// Busy when the mailbox of any of `targets` (other than this core) is
    /// over its high-water mark. Checked for every target before anything is
    /// sent, so that a send reaches all its cores or none: never a 503 after
    /// part of it went out (a retry would duplicate that part).
    pub fn admit(this: &CoreRef, targets: impl IntoIterator<Item = u8>) -> Result<(), Busy> {
        let core = this.borrow();
        for target in targets.into_iter().filter(|t| *t != core.id) {
            if target as usize >= core.node.cores()
                || core.node.queued(target as usize) > MAILBOX_HIGH_WATER
            {
                return Err(Busy);
            }
        }
        Ok(())
    }

    /// Whether any other core of this node is over its mailbox bound (a
    /// send this core would make to every core is refused, not queued).
    pub(super) fn any_core_busy(&self) -> bool {
        (0..self.node.cores())
            .filter(|c| *c != usize::from(self.id))
            .any(|c| self.node.queued(c) > MAILBOX_HIGH_WATER)
    }

    /// Hands `msg` to core `target` without checking its mailbox bound: for
    /// a send `admit` has let through (or one that must not be refused).
    pub fn to_core_admitted(this: &CoreRef, target: u8, msg: CoreMsg) {
        let local = this.borrow().id == target;
        if local {
            this.borrow_mut().handle(msg);
        } else {
            this.borrow_mut().post(target, msg);
        }
    }

    /// Sends one message to every core (built by `make` for each), or none.
    pub fn to_every_core(this: &CoreRef, make: impl Fn() -> CoreMsg) -> Result<(), Busy> {
        let cores = this.borrow().node.cores() as u8;
        Self::admit(this, 0..cores)?;
        (0..cores).for_each(|c| Self::to_core_admitted(this, c, make()));
        Ok(())
    }

    /// Asks every core of this node and collects their answers.
    pub async fn ask_every_core<T>(
        this: &CoreRef,
        make: impl Fn(Reply<T>) -> CoreMsg,
    ) -> Result<Vec<T>, Busy> {
        let cores = this.borrow().node.cores();
        Self::admit(this, 0..cores as u8)?;
        Self::ask_admitted(this, make).await
    }

    /// `ask_every_core` after `admit`: nothing is refused.
    pub async fn ask_admitted<T>(
        this: &CoreRef,
        make: impl Fn(Reply<T>) -> CoreMsg,
    ) -> Result<Vec<T>, Busy> {
        let cores = this.borrow().node.cores();
        let mut pending = Vec::with_capacity(cores);
        for c in 0..cores {
            let (tx, rx) = reply_channel();
            Self::to_core_admitted(this, c as u8, make(tx));
            pending.push(rx);
        }
        let mut answers = Vec::with_capacity(cores);
        for rx in pending {
            answers.push(rx.await.map_err(|_| Busy)?);
        }
        Ok(answers)
    }

    /// Like `to_every_core`, from inside the core: other cores by outbox
    /// (never refused: internal notices must not be lost), this core
    /// directly.
    pub(super) fn tell_every_core(&mut self, make: impl Fn() -> CoreMsg) {
        self.tell_other_cores(&make);
        self.handle(make());
    }

    /// Puts one message in the outbox of every other core (built by `make`
    /// for each); never refused.
    pub(super) fn tell_other_cores(&mut self, make: impl Fn() -> CoreMsg) {
        let me = self.id;
        for i in (0..self.node.cores() as u8).filter(|i| *i != me) {
            self.post(i, make());
        }
    }

    /// Puts `msg` in the outbox of core `target`; sends that outbox now when
    /// someone waits for the answer.
    pub(super) fn post(&mut self, target: u8, msg: CoreMsg) {
        let now = msg.wants_reply();
        let Some(outbox) = self.dispatch.outbox.get_mut(target as usize) else {
            return;
        };
        outbox.push(msg.own_copy());
        if now {
            self.send_outbox(target as usize);
        }
    }

    /// Handles what is in this core's mailbox now, after what was taken out
    /// of it and not handled yet. Called before an API request is executed,
    /// so that a send answered by another core before this request was made
    /// reaches this core's connections first: pushes of requests made one
    /// after another (each after the previous answer) reach a connection in
    /// that order, whichever cores took the requests.
    pub fn take_mail(&mut self) {
        while let Some(msg) = self.next_mail() {
            self.handle(msg);
        }
    }

    /// Handles at most `limit` messages of this core's mail, oldest first;
    /// whether any is left. A message inside a `CoreMsg::Batch` counts as
    /// one: a batch holds everything another core had for this one at a
    /// flush — hundreds of pushes, thousands of notices — and is taken in as
    /// many goes as it needs.
    pub fn take_some_mail(&mut self, limit: usize) -> bool {
        for _ in 0..limit {
            let Some(msg) = self.next_mail() else {
                break;
            };
            self.handle(msg);
        }
        self.has_mail()
    }

    /// Puts `msg`, just received from the mailbox, behind the mail held.
    pub fn hold_mail(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Batch(msgs) => {
                self.node.count_out(self.id as usize, msgs.len());
                self.dispatch.held.extend(msgs);
            }
            msg => self.dispatch.held.push_back(msg),
        }
    }

    /// Whether new mail is in the mailbox (not counting what is held).
    pub(super) fn mail_came(&self) -> bool {
        !self.dispatch.mailbox.is_empty()
    }

    /// Whether mail waits: held, or in the mailbox.
    pub fn has_mail(&self) -> bool {
        !self.dispatch.held.is_empty() || !self.dispatch.mailbox.is_empty()
    }

    /// The oldest message of this core's mail, a batch taken apart.
    fn next_mail(&mut self) -> Option<CoreMsg> {
        loop {
            if let Some(msg) = self.dispatch.held.pop_front() {
                return Some(msg);
            }
            let msg = self.dispatch.mailbox.try_recv()?;
            self.hold_mail(msg);
        }
    }

    /// Hands every core what this core has for it.
    pub(super) fn send_outboxes(&mut self) {
        for target in 0..self.dispatch.outbox.len() {
            self.send_outbox(target);
        }
    }

    /// One mailbox message for everything the outbox of `target` holds,
    /// counted toward that mailbox's bound (`Node::queued`; the receiver
    /// uncounts the batch when it takes it). A send fails only when that
    /// core has stopped (shutdown).
    fn send_outbox(&mut self, target: usize) {
        let Some(outbox) = self
            .dispatch
            .outbox
            .get_mut(target)
            .filter(|o| !o.is_empty())
        else {
            return;
        };
        let batch = std::mem::take(outbox);
        self.node.count_in(target, batch.len());
        if let Some(mailbox) = self.node.mailboxes.get(target) {
            let _ = mailbox.send(CoreMsg::Batch(batch));
        }
    }
}
