//! A worker thread that reads /proc snapshots off the event path, at a
//! bounded rate, and hands them back to the daemon's loop.

use std::{
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::UnboundedSender;

use super::SeedRequest;
use crate::seed::{SeedError, Snapshot, snapshot};

/// Upper bound on snapshots per second: each maps read holds the target's
/// mmap_lock, so a storm of resyncs must not stall the host's processes.
pub const DEFAULT_MAX_SNAPSHOTS_PER_SEC: u32 = 2000;

pub struct SeedResult {
    pub request: SeedRequest,
    pub result: Result<Snapshot, SeedError>,
}

pub struct Seeder {
    requests: mpsc::Sender<SeedRequest>,
}

impl Seeder {
    pub fn spawn(results: UnboundedSender<SeedResult>, max_per_sec: u32) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<SeedRequest>();
        let spacing = Duration::from_secs(1) / max_per_sec.max(1);
        thread::Builder::new()
            .name("memmon-seeder".into())
            .spawn(move || {
                let mut next = Instant::now();
                for request in rx {
                    let now = Instant::now();
                    if next > now {
                        thread::sleep(next - now);
                    }
                    next = Instant::now().max(next) + spacing;
                    let result = snapshot(request.pid);
                    if results.send(SeedResult { request, result }).is_err() {
                        break; // the daemon is shutting down
                    }
                }
            })?;
        Ok(Self { requests: tx })
    }

    pub fn request(&self, request: SeedRequest) {
        // A closed channel means the worker died; the daemon notices through
        // results never arriving and the drift counter, so no panic here.
        let _ = self.requests.send(request);
    }
}
