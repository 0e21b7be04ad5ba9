//! The daemon's per-event work without the kernel: ring-buffer records
//! of an mmap+munmap loop decoded and applied to a tracker, as the loop
//! does per drained batch (each record applied as it is decoded, with no
//! buffer in between, as `bpf::EventStream::drain` does).
//!
//! ```sh
//! bench_consumer [EVENTS] [REGIONS] [held]
//! ```
//!
//! REGIONS anonymous regions are in the process's model first (a big
//! process makes each model edit dearer). With `held`, a view of the
//! process is held across every batch, as a worker answering a query
//! holds one: the first edit of each batch then copies what the view
//! shares. Prints `result events=N regions=R held=B ns_per_event=X
//! cpu_ns_per_event=C us_per_batch=Y`: C counts only this thread's CPU
//! time, so it holds up better than the wall figure on a busy machine.

use std::time::Instant;

use memmon::{
    events::decode,
    model::{AddressSpace, Backing, Perms, Region},
    seed::Snapshot,
    tracker::Tracker,
};
use memmon_common::{COMM_LEN, EventHeader, EventKind, SyscallEvent};

const PID: u32 = 4242;
const BATCH: usize = 4096;
/// Where the loop's mmap lands each time.
const ADDR: i64 = 0x7f00_0000_0000;
/// The return address the kernel reads at each call, in the text region.
const CALL_SITE: u64 = 0x5555_5555_1234;

fn record(nr: i64, args: [u64; 6], ret: i64, ts_ns: u64) -> Vec<u8> {
    let mut comm = [0u8; COMM_LEN];
    comm[..7].copy_from_slice(b"memloop");
    let raw = SyscallEvent {
        header: EventHeader {
            kind: EventKind::Syscall as u32,
            tgid: PID,
            tid: PID,
            _pad0: 0,
            ts_ns,
            comm,
        },
        nr: nr as u32,
        _pad0: 0,
        args,
        ret,
        call_site: CALL_SITE,
        stack_id: memmon_common::NO_STACK,
        _pad1: 0,
    };
    // SAFETY: the bytes of a plain #[repr(C)] record of integers.
    unsafe {
        std::slice::from_raw_parts(
            (&raw as *const SyscallEvent).cast::<u8>(),
            size_of::<SyscallEvent>(),
        )
    }
    .to_vec()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .map_or(2_000_000, |a| a.parse().expect("EVENTS"));
    let regions: u64 = args.next().map_or(40, |a| a.parse().expect("REGIONS"));
    let held = args.next().is_some_and(|a| a == "held");

    // Distinct protections keep the regions from merging. The program's
    // text holds the call site, so each origin names its object as in a
    // real process (one of the regions).
    let text = Region::new(
        CALL_SITE & !0xfff,
        (CALL_SITE & !0xfff) + 0x1000,
        Perms::from_prot(5, false),
        0x1000,
        Backing::File {
            path: "/usr/local/bin/memloop".into(),
            dev_major: 8,
            dev_minor: 1,
            inode: 4242,
        },
    );
    // The loop's pages land right below an anonymous rw- region, as
    // mmaps do below the last mapping: the model merges each one into it
    // and munmap splits it off again, as in a real process.
    let neighbour = Region::new(
        ADDR as u64 + 0x1000,
        ADDR as u64 + 0x21000,
        Perms::from_prot(3, false),
        0,
        Backing::anonymous(),
    );
    let space = AddressSpace::from_regions(
        (2..regions)
            .map(|i| {
                let start = 0x1000_0000 + i * 0x2000;
                Region::new(
                    start,
                    start + 0x1000,
                    Perms::from_prot(1 + (i % 2), false),
                    0,
                    Backing::anonymous(),
                )
            })
            .chain([text, neighbour]),
    );
    let mut tracker = Tracker::new(memmon::tracker::DEFAULT_HISTORY_LEN);
    tracker.request_seed(PID, memmon::tracker::SeedReason::Unknown);
    let request = tracker.take_requests().pop().expect("a request");
    tracker.install_snapshot(
        &request,
        Snapshot {
            pid: PID,
            start_time_ticks: 1,
            comm: "memloop".into(),
            exe: None,
            uid: 0,
            personality: 0,
            cgroup: None,
            space,
            taken_ns: 0,
        },
    );

    // One pair's records, as the kernel writes them, reused round-robin
    // (the model only sees addresses, which recur in a real loop too).
    let addr = ADDR;
    let pair = [
        record(libc::SYS_mmap, [0, 4096, 3, 0x22, u64::MAX, 0], addr, 1),
        record(libc::SYS_munmap, [addr as u64, 4096, 0, 0, 0, 0], 0, 2),
    ];
    let started = Instant::now();
    let cpu_started = thread_cpu_ns();
    let mut done = 0;
    while done < events {
        let n = BATCH.min(events - done);
        let view = held.then(|| tracker.process(PID).map(|p| p.view(0)));
        // As the daemon's drain does: each record applied as decoded.
        for i in 0..n {
            match decode(&pair[i % 2]) {
                Ok(event) => tracker.apply(event),
                Err(err) => panic!("undecodable record: {err}"),
            }
        }
        drop(view);
        done += n;
    }
    let elapsed = started.elapsed();
    let cpu_ns = thread_cpu_ns() - cpu_started;
    let regions_now = tracker.process(PID).map_or(0, |p| p.space.region_count());
    assert_eq!(
        regions_now as u64, regions,
        "the loop leaves the model as it was"
    );
    let batches = events.div_ceil(BATCH);
    println!(
        "result events={events} regions={regions} held={held} ns_per_event={:.1} cpu_ns_per_event={:.1} us_per_batch={:.1}",
        elapsed.as_nanos() as f64 / events as f64,
        cpu_ns as f64 / events as f64,
        elapsed.as_secs_f64() * 1e6 / batches as f64
    );
}

/// CPU time this thread has used, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
