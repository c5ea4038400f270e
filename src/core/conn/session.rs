//! What a connection keeps so that it can come back as itself after a drop
//! (docs/api.md §8): the push and notice frames written to it lately, and
//! every one sent to it while it is detached.
//!
//! The frames are handles to the `Bytes` of the fan-out — a refcount, never
//! a copy per recipient — bounded by `ws.resume_buffer_bytes`, each frame
//! counted at its length plus its handle, so the bound is the most a
//! session can hold on to whatever the frames' sharing. The oldest go
//! first. A connection has no session until a frame is kept for it (or it
//! detaches), so an idle one costs nothing more than with resume off.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::ws::message::frame_message_id;
use crate::ws::{CloseReason, Last};

/// What one kept frame costs besides its bytes.
const HANDLE: usize = std::mem::size_of::<Bytes>();

#[derive(Default)]
pub struct Session {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// A frame was dropped to stay under the bound.
    lost: bool,
    /// Detached: since when, and why the connection dropped (the reason
    /// its disconnect is reported with if it does not come back).
    pub detached: Option<(Instant, CloseReason)>,
}

/// What a resume gets back of a session.
pub struct Replay {
    pub frames: Vec<Bytes>,
    /// Nothing after the client's `last` was lost.
    pub recovered: bool,
}

impl Session {
    /// Keeps `frame`, dropping the oldest frames past `limit`; returns how
    /// many were dropped.
    pub fn keep(&mut self, frame: &Bytes, limit: usize) -> usize {
        self.frames.push_back(frame.clone());
        self.bytes += frame.len() + HANDLE;
        let mut dropped = 0;
        while self.bytes > limit {
            let Some(old) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= old.len() + HANDLE;
            self.lost = true;
            dropped += 1;
        }
        dropped
    }

    /// Frames kept.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frames after the one named `last` (all of them when there is
    /// none or it is no longer kept), in order, and whether that is everything
    /// the client missed.
    pub fn replay(&self, last: Last) -> Replay {
        let found = match last {
            Last::Nothing => None,
            Last::Id(id) => Some(
                self.frames
                    .iter()
                    .rposition(|f| frame_message_id(f) == Some(id)),
            ),
            Last::Unreadable => Some(None),
        };
        let (start, recovered) = match found {
            None => (0, !self.lost),
            Some(Some(i)) => (i + 1, true),
            Some(None) => (0, false),
        };
        Replay {
            frames: self.frames.range(start..).cloned().collect(),
            recovered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::message::push_frame;
    use crate::ws::MessageId;

    fn push(id: u64) -> Bytes {
        push_frame(MessageId(id), "", 0, "", "1")
    }

    fn ids(r: &Replay) -> Vec<u64> {
        r.frames
            .iter()
            .filter_map(|f| frame_message_id(f).map(|m| m.0))
            .collect()
    }

    #[test]
    fn replays_what_follows_last() {
        let mut s = Session::default();
        for id in 1..=4 {
            assert_eq!(s.keep(&push(id), 1 << 20), 0);
        }
        let r = s.replay(Last::Id(MessageId(2)));
        assert_eq!((ids(&r), r.recovered), (vec![3, 4], true));
        let r = s.replay(Last::Id(MessageId(4)));
        assert_eq!((ids(&r), r.recovered), (vec![], true));
        let r = s.replay(Last::Nothing);
        assert_eq!((ids(&r), r.recovered), (vec![1, 2, 3, 4], true));
        for unknown in [Last::Id(MessageId(99)), Last::Unreadable] {
            let r = s.replay(unknown);
            assert_eq!((ids(&r), r.recovered), (vec![1, 2, 3, 4], false));
        }
    }

    #[test]
    fn the_bound_drops_the_oldest_and_says_so() {
        let one = push(1).len() + HANDLE;
        let mut s = Session::default();
        for id in 1..=5 {
            s.keep(&push(id), 3 * one);
        }
        assert_eq!(s.len(), 3);
        let r = s.replay(Last::Id(MessageId(1)));
        assert_eq!(
            (ids(&r), r.recovered),
            (vec![3, 4, 5], false),
            "1's successor lost"
        );
        let r = s.replay(Last::Id(MessageId(3)));
        assert_eq!((ids(&r), r.recovered), (vec![4, 5], true));
        assert!(!s.replay(Last::Nothing).recovered);
        let mut tiny = Session::default();
        assert_eq!(
            tiny.keep(&push(1), 10),
            1,
            "a frame over the bound is not kept"
        );
        assert!(tiny.is_empty());
    }

    #[test]
    fn kept_frames_share_the_fan_outs_bytes() {
        let frame = push(7);
        let mut s = Session::default();
        s.keep(&frame, 1 << 20);
        let r = s.replay(Last::Nothing);
        assert_eq!(r.frames[0].as_ptr(), frame.as_ptr(), "a handle, not a copy");
    }
}
