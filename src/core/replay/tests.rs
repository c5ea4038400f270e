//! The replay judged on a log alone: audiences through group and user
//! changes, the client's `last`, the node-wide bound and a session's own.

use super::*;
use crate::ws::message::push_frame;
use crate::ws::MessageId;

const A: ConnAddr = ConnAddr { slot: 1, gen: 0 };

fn push(id: u64) -> Push {
    Push::plain(push_frame(MessageId(id), "", 0, "", "1"))
}

fn ids(r: &Replayed) -> Vec<u64> {
    r.frames
        .iter()
        .filter_map(|f| frame_message_id(&f.plain).map(|m| m.0))
        .collect()
}

fn rc(s: &str) -> Rc<str> {
    Rc::from(s)
}

fn member<'a>(groups: &'a [Rc<str>], session: Option<&'a Session>) -> Member<'a> {
    Member {
        addr: A,
        system: "s",
        groups,
        user: "u",
        session,
    }
}

#[test]
fn replays_what_was_addressed_to_it_after_last() {
    let mut log = Log::new(1 << 20);
    let place = Place::new(log.head());
    log.append(To::System(rc("s")), push(1));
    log.append(To::System(rc("other")), push(2));
    log.append(To::Group(rc("s"), rc("g")), push(3));
    log.append(To::Group(rc("s"), rc("h")), push(4));
    log.append(To::User(rc("s"), rc("u")), push(5));
    log.append(To::Conn(A), push(6));
    log.append(To::Conn(ConnAddr { slot: 1, gen: 1 }), push(7));
    let groups = [rc("g")];
    let m = member(&groups, None);
    let r = replay(&log, &place, &m, Last::Nothing);
    assert_eq!((ids(&r), r.recovered), (vec![1, 3, 5, 6], true));
    let r = replay(&log, &place, &m, Last::Id(MessageId(3)));
    assert_eq!((ids(&r), r.recovered), (vec![5, 6], true));
    let r = replay(&log, &place, &m, Last::Id(MessageId(6)));
    assert_eq!((ids(&r), r.recovered), (vec![], true));
    for unknown in [
        Last::Id(MessageId(2)),
        Last::Id(MessageId(99)),
        Last::Unreadable,
    ] {
        let r = replay(&log, &place, &m, unknown);
        assert_eq!((ids(&r), r.recovered), (vec![1, 3, 5, 6], false));
    }
}

#[test]
fn acknowledged_frames_are_not_replayed_and_the_newest_still_places_the_client() {
    let mut log = Log::new(1 << 20);
    let mut place = Place::new(log.head());
    log.append(To::System(rc("s")), push(1));
    log.append(To::System(rc("s")), push(2));
    let pong = Place::ping(log.head(), 2);
    assert!(place.on_pong(&pong[2..], log.head()));
    log.prune_through(place.acked);
    log.append(To::System(rc("s")), push(3));
    let m = member(&[], None);
    let r = replay(&log, &place, &m, Last::Id(MessageId(2)));
    assert_eq!((ids(&r), r.recovered), (vec![3], true));
    let r = replay(&log, &place, &m, Last::Id(MessageId(1)));
    assert_eq!(
        (ids(&r), r.recovered),
        (vec![3], false),
        "1 is behind what it acked"
    );
    let r = replay(&log, &place, &m, Last::Nothing);
    assert!(!r.recovered, "it had frames before");
}

#[test]
fn binds_and_unbinds_in_the_gap_count_from_when_they_happened() {
    let mut log = Log::new(1 << 20);
    let place = Place::new(log.head());
    let mut session = Session::default();
    log.append(To::Group(rc("s"), rc("old")), push(1)); // member then
    session.change(log.head(), What::Left(rc("old")));
    log.append(To::Group(rc("s"), rc("old")), push(2)); // not any more
    log.append(To::Group(rc("s"), rc("new")), push(3)); // not yet
    session.change(log.head(), What::Joined(rc("new")));
    log.append(To::Group(rc("s"), rc("new")), push(4));
    log.append(To::User(rc("s"), rc("u0")), push(5)); // its user then
    session.change(log.head(), What::User(rc("u0")));
    log.append(To::User(rc("s"), rc("u0")), push(6));
    log.append(To::User(rc("s"), rc("u")), push(7));
    let groups = [rc("new")];
    let m = member(&groups, Some(&session));
    let r = replay(&log, &place, &m, Last::Nothing);
    assert_eq!((ids(&r), r.recovered), (vec![1, 4, 5, 7], true));
}

#[test]
fn what_the_bounds_dropped_makes_it_unrecovered() {
    let frame_cost = push(1).held() + log::ENTRY_COST;
    let mut log = Log::new(3 * frame_cost);
    let place = Place::new(log.head());
    for id in 1..=5 {
        log.append(To::System(rc("s")), push(id));
    }
    let m = member(&[], None);
    let r = replay(&log, &place, &m, Last::Id(MessageId(1)));
    assert_eq!((ids(&r), r.recovered), (vec![3, 4, 5], false));
    let r = replay(&log, &place, &m, Last::Id(MessageId(3)));
    assert_eq!((ids(&r), r.recovered), (vec![4, 5], true), "after the loss");

    let mut log = Log::new(1 << 20);
    let mut session = Session::default();
    for id in 1..=3 {
        let (seq, _) = log.append(To::Conn(A), push(id));
        for over in session.own(seq, 100, 250) {
            log.hollow(over);
        }
    }
    let m = member(&[], Some(&session));
    let r = replay(&log, &place, &m, Last::Nothing);
    assert_eq!((ids(&r), r.recovered), (vec![2, 3], false));
    let r = replay(&log, &place, &m, Last::Id(MessageId(2)));
    assert_eq!((ids(&r), r.recovered), (vec![3], true), "2 was read");
}
