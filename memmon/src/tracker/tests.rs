//! The per-process seeding state machine, through the tracker's API.

use super::*;
use crate::{
    events::Meta,
    model::{AddressSpace, Backing, Perms, Region},
};

fn event(pid: u32, body: EventBody) -> Event {
    Event {
        meta: Meta {
            pid,
            tid: pid,
            ts_ns: 0,
            comm: "t".into(),
            call_site: 0,
            stack_id: None,
        },
        body,
    }
}

fn munmap(pid: u32, addr: u64) -> Event {
    let body = EventBody::Munmap {
        addr,
        len: 0x1000,
        ret: 0,
    };
    event(pid, body)
}

/// A process with one anonymous region `[0x10000, 0x20000)`.
fn snapshot(pid: u32) -> Snapshot {
    let mut space = AddressSpace::new();
    let perms = Perms::parse("rw-p").unwrap();
    space.map_region(Region::new(
        0x10000,
        0x20000,
        perms,
        0,
        Backing::anonymous(),
    ));
    Snapshot {
        pid,
        start_time_ticks: 1,
        comm: "t".into(),
        exe: None,
        uid: 0,
        personality: 0,
        cgroup: None,
        space,
        taken_ns: 0,
    }
}

/// The cheap count agrees with the states it counts.
fn check_count(t: &Tracker) {
    let seeding = t.processes().filter(|p| p.awaiting_snapshot()).count();
    assert_eq!(t.seeding_count(), seeding);
    let buffered: usize = t.processes().map(|p| p.seed.buffered()).sum();
    assert_eq!(t.buffered_events(), buffered);
}

/// Lands `snapshot` as the answer to the request its pid awaits.
fn land(t: &mut Tracker, snapshot: Snapshot) {
    let request = t.in_flight(snapshot.pid).expect("a request in flight");
    t.install_snapshot(&request, snapshot);
}

/// A tracker keeping `history` events per process, with `pid` modelled
/// from its snapshot and no request left to take.
fn seeded(history: usize, pid: u32) -> Tracker {
    let mut t = Tracker::new(history);
    t.request_seed(pid, SeedReason::Unknown);
    t.take_requests();
    land(&mut t, snapshot(pid));
    t
}

/// Answers the request `pid` awaits with a failure.
fn fail(t: &mut Tracker, pid: u32, gone: bool) {
    let request = t.in_flight(pid).expect("a request in flight");
    t.snapshot_failed(&request, gone);
}

fn reasons(t: &mut Tracker) -> Vec<(u32, SeedReason)> {
    t.take_requests()
        .into_iter()
        .map(|r| (r.pid, r.reason))
        .collect()
}

#[test]
fn events_wait_for_the_snapshot_then_replay_on_it() {
    let mut t = Tracker::new(16);
    t.apply(munmap(7, 0x10000));
    assert_eq!(reasons(&mut t), [(7, SeedReason::Unknown)]);
    assert!(t.process(7).unwrap().awaiting_snapshot());
    assert_eq!(t.seeding_count(), 1);
    t.apply(munmap(7, 0x11000));
    assert!(reasons(&mut t).is_empty(), "one request in flight");
    land(&mut t, snapshot(7));
    check_count(&t);
    assert_eq!(t.seeding_count(), 0);
    let state = t.process(7).unwrap();
    assert!(matches!(state.seed_state(), SeedState::Seeded));
    let starts: Vec<u64> = state.space.regions().map(|r| r.start).collect();
    assert_eq!(starts, [0x12000], "both buffered munmaps replayed");
    assert_eq!(t.stats.snapshots_installed, 1);
}

#[test]
fn an_exec_during_a_snapshot_asks_for_another() {
    let mut t = Tracker::new(16);
    t.request_seed(7, SeedReason::Unknown);
    t.apply(munmap(7, 0x10000));
    let exec = EventBody::Exec {
        filename: "/bin/true".into(),
        old_tid: 7,
    };
    t.apply(event(7, exec));
    assert_eq!(reasons(&mut t), [(7, SeedReason::Unknown)]);
    land(&mut t, snapshot(7));
    // The munmap belonged to the old image: dropped, not replayed.
    assert_eq!(t.process(7).unwrap().space.region_count(), 1);
    assert_eq!(reasons(&mut t), [(7, SeedReason::Exec)]);
    assert_eq!(t.seeding_count(), 1);
    check_count(&t);
    land(&mut t, snapshot(7));
    assert_eq!(t.seeding_count(), 0);
    assert!(reasons(&mut t).is_empty());
}

#[test]
fn an_overflowing_buffer_is_dropped_and_reseeded() {
    let mut t = Tracker::new(0);
    t.request_seed(7, SeedReason::Unknown);
    for _ in 0..=MAX_BUFFERED_EVENTS {
        t.apply(munmap(7, 0x10000));
    }
    t.take_requests();
    land(&mut t, snapshot(7));
    assert_eq!(reasons(&mut t), [(7, SeedReason::Overflow)]);
    check_count(&t);
}

#[test]
fn a_failed_snapshot_leaves_an_unverified_model_that_follows_events() {
    let mut t = Tracker::new(16);
    t.request_seed(7, SeedReason::Unknown);
    assert_eq!(reasons(&mut t), [(7, SeedReason::Unknown)]);
    t.apply(munmap(7, 0x10000));
    fail(&mut t, 7, false);
    check_count(&t);
    let state = t.process(7).unwrap();
    assert!(matches!(state.seed_state(), SeedState::SeedFailed));
    assert!(!state.awaiting_snapshot());
    assert_eq!(t.stats.snapshots_failed, 1);
    // Events now apply directly, and a new request seeds again.
    t.apply(munmap(7, 0x10000));
    assert!(!t.process(7).unwrap().awaiting_snapshot());
    t.request_seed(7, SeedReason::Drift);
    assert_eq!(reasons(&mut t), [(7, SeedReason::Drift)]);
    assert_eq!(t.seeding_count(), 1);
    // Gone: forgotten, and no longer counted.
    fail(&mut t, 7, true);
    assert!(t.process(7).is_none());
    assert_eq!(t.seeding_count(), 0);
}

#[test]
fn exits_forks_and_pid_reuse_keep_the_count() {
    let mut t = Tracker::new(16);
    for pid in [1, 2, 3] {
        t.request_seed(pid, SeedReason::Unknown);
    }
    assert_eq!(t.seeding_count(), 3);
    t.apply(event(1, EventBody::Exit { group_dead: true }));
    assert_eq!(t.seeding_count(), 2);
    // A child of pid 2 (still seeding) reuses pid 3: the stale state goes,
    // the child waits for its own snapshot.
    let fork = |child| EventBody::Fork {
        child_pid: child,
        child_tid: child,
        clone_flags: 0,
    };
    t.apply(event(2, fork(3)));
    check_count(&t);
    assert_eq!(t.seeding_count(), 2);
    land(&mut t, snapshot(2));
    // A child of a seeded parent copies its model: nothing to wait for.
    t.apply(event(2, fork(4)));
    assert!(!t.process(4).unwrap().awaiting_snapshot());
    assert_eq!(t.process(4).unwrap().space.region_count(), 1);
    check_count(&t);
    t.retain_alive(&HashSet::from([2, 4]));
    assert_eq!(t.seeding_count(), 0);
    check_count(&t);
}

#[test]
fn the_global_buffer_budget_drops_and_resyncs_the_process_past_it() {
    let mut t = Tracker::with_buffer_budget(0, 10);
    for pid in [7, 8] {
        t.request_seed(pid, SeedReason::Unknown);
    }
    t.take_requests();
    for _ in 0..6 {
        t.apply(munmap(7, 0x10000));
    }
    check_count(&t);
    assert_eq!(t.buffered_events(), 6);
    // pid 8 fits four events; its fifth finds the budget spent.
    for _ in 0..5 {
        t.apply(munmap(8, 0x10000));
    }
    check_count(&t);
    assert_eq!(t.buffered_events(), 6, "pid 8's buffer was dropped");
    assert_eq!(t.stats.buffered_events_dropped, 5);
    land(&mut t, snapshot(8));
    assert_eq!(reasons(&mut t), [(8, SeedReason::Overflow)]);
    // pid 7 kept its events and replays them.
    land(&mut t, snapshot(7));
    assert!(reasons(&mut t).is_empty());
    check_count(&t);
    assert_eq!(t.buffered_events(), 0);
}

#[test]
fn published_views_share_the_model_until_it_changes() {
    let mut t = seeded(4, 7);
    let before = t.process(7).unwrap().view(16);
    let again = t.process(7).unwrap().view(16);
    assert!(std::sync::Arc::ptr_eq(&before.space, &again.space));
    assert_eq!(before.applied_events, again.applied_events);
    t.apply(munmap(7, 0x10000));
    let after = t.process(7).unwrap().view(1);
    assert!(!std::sync::Arc::ptr_eq(&before.space, &after.space));
    assert_eq!(
        before.space.mapped_bytes(),
        0x10000,
        "the old view is untouched"
    );
    assert_eq!(after.space.mapped_bytes(), 0xf000);
    assert_ne!(before.applied_events, after.applied_events);
    assert_eq!(after.history.len(), 1);
}

#[test]
fn syscalls_the_model_cannot_apply_resync_at_once_unless_they_failed() {
    let mut t = seeded(0, 7);
    let io_setup = |ret| EventBody::IoSetup {
        nr_events: 64,
        ring: 0x7000_0000,
        ret,
    };
    t.apply(event(7, io_setup(-22)));
    assert!(
        reasons(&mut t).is_empty(),
        "a failed io_setup changed nothing"
    );
    t.apply(event(7, io_setup(0)));
    assert_eq!(reasons(&mut t), [(7, SeedReason::Unmodelled)]);
    land(&mut t, snapshot(7));
    let remap = EventBody::RemapFilePages {
        start: 0x10000,
        size: 0x1000,
        pgoff: 3,
        flags: 0,
        ret: 0,
    };
    t.apply(event(7, remap));
    t.apply(event(
        7,
        EventBody::IoDestroy {
            ring: 0x7000_0000,
            ret: 0,
        },
    ));
    // One snapshot in flight covers both.
    assert_eq!(reasons(&mut t), [(7, SeedReason::Unmodelled)]);
    check_count(&t);
    for s in Syscall::ALL {
        let expected = matches!(
            s,
            Syscall::IoSetup | Syscall::IoDestroy | Syscall::RemapFilePages | Syscall::Shmat
        );
        assert_eq!(s.resync_reason().is_some(), expected, "{}", s.name());
    }
}

fn at(ts_ns: u64, mut event: Event) -> Event {
    event.meta.ts_ns = ts_ns;
    event
}

fn starts(t: &Tracker, pid: u32) -> Vec<(u64, u64)> {
    t.process(pid)
        .unwrap()
        .space
        .regions()
        .map(|r| (r.start, r.end))
        .collect()
}

/// Found by the torture test: a resync's snapshot can be taken seconds
/// after its request, and the events buffered meanwhile were replayed on
/// it whole. A move replayed on a snapshot that already shows it moves
/// whatever is at the old address now.
#[test]
fn events_older_than_the_snapshot_are_not_replayed_on_it() {
    let mut t = Tracker::new(16);
    t.request_seed(7, SeedReason::Lost);
    // Before the snapshot: the region moved away and a page was mapped
    // where it was. After it: a munmap of one page of the moved region.
    let moved = EventBody::Mremap {
        old_addr: 0x10000,
        old_len: 0x10000,
        new_len: 0x10000,
        flags: 3, // MREMAP_MAYMOVE | MREMAP_FIXED
        new_addr: 0x40000,
        ret: 0x40000,
    };
    let mapped = EventBody::Mmap {
        addr: 0x10000,
        len: 0x1000,
        prot: 3,
        flags: 0x32, // MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
        fd: -1,
        offset: 0,
        ret: 0x10000,
        file: None,
    };
    t.apply(at(100, event(7, moved)));
    t.apply(at(110, event(7, mapped)));
    t.apply(at(300, munmap(7, 0x40000)));
    // What /proc showed at 200: the moved region and the new page.
    let mut shot = snapshot(7);
    shot.taken_ns = 200;
    let perms = Perms::parse("rw-p").unwrap();
    shot.space = AddressSpace::new();
    for (start, end) in [(0x10000, 0x11000), (0x40000, 0x50000)] {
        shot.space
            .map_region(Region::new(start, end, perms, 0, Backing::anonymous()));
    }
    land(&mut t, shot);
    assert_eq!(
        starts(&t, 7),
        [(0x10000, 0x11000), (0x41000, 0x50000)],
        "only the munmap after the snapshot applies"
    );
    // A late event from before the snapshot (still in the ring buffer when
    // it landed) is skipped too.
    t.apply(at(150, munmap(7, 0x10000)));
    assert_eq!(starts(&t, 7), [(0x10000, 0x11000), (0x41000, 0x50000)]);
}

/// A parent model from a snapshot taken after the fork holds changes the
/// child never had: the child is read from /proc instead.
#[test]
fn a_fork_older_than_the_parents_snapshot_seeds_the_child() {
    let mut t = Tracker::new(16);
    t.request_seed(2, SeedReason::Lost);
    let mut shot = snapshot(2);
    shot.taken_ns = 500;
    land(&mut t, shot);
    reasons(&mut t);
    let fork = |child| EventBody::Fork {
        child_pid: child,
        child_tid: child,
        clone_flags: 0,
    };
    t.apply(at(400, event(2, fork(3))));
    assert_eq!(reasons(&mut t), [(3, SeedReason::Fork)]);
    assert!(t.process(3).unwrap().awaiting_snapshot());
    t.apply(at(600, event(2, fork(4))));
    assert!(reasons(&mut t).is_empty(), "a later fork copies the model");
    assert_eq!(starts(&t, 4), [(0x10000, 0x20000)]);
    check_count(&t);
}

#[test]
fn wx_transitions_carry_their_origin_and_outlive_the_process_in_counts() {
    use crate::rules::wx_events::WxKind;
    let mut t = seeded(0, 7);
    let mprotect = |prot, ret| {
        let mut e = event(
            7,
            EventBody::Mprotect {
                addr: 0x10000,
                len: 0x2000,
                prot,
                pkey: None,
                ret,
            },
        );
        e.meta.tid = 8;
        e.meta.ts_ns = 50;
        e.meta.call_site = 0x10010;
        e
    };
    t.apply(mprotect(
        libc::PROT_READ as u64 | libc::PROT_EXEC as u64,
        -22,
    ));
    assert!(
        t.process(7).unwrap().wx.events().len() == 0,
        "a failed call"
    );
    t.apply(mprotect(libc::PROT_READ as u64 | libc::PROT_EXEC as u64, 0));
    let state = t.process(7).unwrap();
    let kinds: Vec<_> = state.wx.events().map(|e| e.transition.kind).collect();
    assert_eq!(kinds, [WxKind::WToX, WxKind::AnonExec]);
    let first = state.wx.events().next().unwrap();
    assert_eq!(
        (first.transition.start, first.transition.end),
        (0x10000, 0x12000)
    );
    assert_eq!((first.origin.tid, first.origin.ts_ns), (8, 50));
    // The call site is where it was called from: anonymous memory here.
    assert_eq!(first.origin.call_site.as_ref().unwrap().addr, 0x10010);
    assert_eq!(state.view(0).wx.events().len(), 2);
    t.apply(event(7, EventBody::Exit { group_dead: true }));
    let retired = &t.retired_wx()[&("t".to_owned(), None)];
    assert_eq!(retired.get(WxKind::WToX), 1);
    assert_eq!(retired.get(WxKind::AnonExec), 1);
}

/// A JIT that flips its page before the snapshot of its exec lands: the
/// snapshot covers the flips, and they are still recorded, with call
/// sites normalized against the snapshot.
#[test]
fn transitions_covered_by_the_snapshot_are_caught_up() {
    use crate::rules::wx_events::WxKind;
    let mut t = Tracker::new(0);
    t.request_seed(7, SeedReason::Exec);
    let mapped = EventBody::Mmap {
        addr: 0,
        len: 0x1000,
        prot: 3,
        flags: 0x22, // MAP_PRIVATE | MAP_ANONYMOUS
        fd: -1,
        offset: 0,
        ret: 0x70000,
        file: None,
    };
    let mprotect = |prot| EventBody::Mprotect {
        addr: 0x70000,
        len: 0x1000,
        prot,
        pkey: None,
        ret: 0,
    };
    let mut flip = at(120, event(7, mprotect(5)));
    flip.meta.call_site = 0x10040;
    t.apply(at(100, event(7, mapped)));
    t.apply(flip);
    t.apply(at(130, event(7, mprotect(3))));
    // After the snapshot: applied as usual (RW -> RX again).
    t.apply(at(300, event(7, mprotect(5))));
    let mut shot = snapshot(7);
    shot.taken_ns = 200;
    shot.space.map_region(Region::new(
        0x70000,
        0x71000,
        Perms::parse("rw-p").unwrap(),
        0,
        Backing::anonymous(),
    ));
    land(&mut t, shot);
    let state = t.process(7).unwrap();
    let got: Vec<_> = state
        .wx
        .events()
        .map(|e| (e.origin.ts_ns, e.transition.kind))
        .collect();
    assert_eq!(
        got,
        [
            (120, WxKind::WToX),
            (120, WxKind::AnonExec),
            (130, WxKind::XToW),
            (300, WxKind::WToX),
            (300, WxKind::AnonExec),
        ]
    );
    let site = state.wx.events().next().unwrap().origin.call_site.clone();
    assert_eq!(site.unwrap().addr, 0x10040);
}

/// Found by the torture test under load: the kernel marks a child lost
/// when its parent had lost records, and the daemon can request the
/// child's snapshot before it applies the fork. The fork then gives the
/// child a fresh model (the parent's, now resynced), and the old
/// request's answer, taken before the child's later calls, must not
/// overwrite them.
#[test]
fn a_snapshot_no_longer_awaited_is_dropped() {
    let mut t = Tracker::new(16);
    t.request_seed(2, SeedReason::Unknown);
    land(&mut t, snapshot(2));
    t.take_requests();
    t.request_seed(3, SeedReason::Lost);
    let stale = t.take_requests();
    assert_eq!(stale.len(), 1);
    let fork = EventBody::Fork {
        child_pid: 3,
        child_tid: 3,
        clone_flags: 0,
    };
    t.apply(at(100, event(2, fork)));
    assert!(!t.process(3).unwrap().awaiting_snapshot());
    t.apply(at(300, munmap(3, 0x10000)));
    // /proc was read at 200, before the child's munmap.
    let mut shot = snapshot(3);
    shot.taken_ns = 200;
    t.install_snapshot(&stale[0], shot);
    assert_eq!(starts(&t, 3), [(0x11000, 0x20000)], "the munmap stays");
    assert_eq!(t.stats.snapshots_superseded, 1);
    assert_eq!(t.stats.snapshots_installed, 1);
    // A failure answering it is dropped too.
    t.snapshot_failed(&stale[0], true);
    assert!(t.process(3).is_some());
    // A second request supersedes the first while both are in flight.
    t.request_seed(3, SeedReason::Drift);
    let first = t.in_flight(3).unwrap();
    land(&mut t, snapshot(3));
    t.request_seed(3, SeedReason::Drift);
    t.install_snapshot(&first, snapshot(3));
    assert!(t.process(3).unwrap().awaiting_snapshot());
    check_count(&t);
}

/// Found by the torture test: an mprotect over a range with a hole
/// changes the regions before the hole and then fails with ENOMEM.
#[test]
fn a_failed_call_that_may_have_changed_part_of_its_range_resyncs() {
    let mut t = seeded(16, 7);
    let mprotect = |ret| EventBody::Mprotect {
        addr: 0x1f000,
        len: 0x2000,
        prot: 0,
        pkey: None,
        ret,
    };
    t.apply(event(7, mprotect(-i64::from(libc::EINVAL))));
    assert!(reasons(&mut t).is_empty(), "EINVAL is checked first");
    t.apply(event(7, mprotect(-i64::from(libc::ENOMEM))));
    assert_eq!(reasons(&mut t), [(7, SeedReason::PartialFailure)]);
    check_count(&t);
}

#[test]
fn a_full_history_keeps_the_latest_events_oldest_first() {
    let mut t = seeded(3, 7);
    for page in 0..5u64 {
        t.apply(munmap(7, 0x10000 + page * 0x1000));
        let kept: Vec<u64> = t
            .process(7)
            .unwrap()
            .history
            .iter()
            .map(|e| match e.body {
                EventBody::Munmap { addr, .. } => (addr - 0x10000) / 0x1000,
                _ => unreachable!("only munmaps were applied"),
            })
            .collect();
        let want: Vec<u64> = (page.saturating_sub(2)..=page).collect();
        assert_eq!(kept, want, "after munmap {page}");
    }
}
