//! Comparing models with /proc/PID/maps: on request and periodically, on
//! workers (the maps read takes the target's mmap_lock, and the comparison
//! of a large process is not free).

use std::{sync::Arc, sync::atomic::Ordering, time::Duration};

use tokio::time::Instant;

use super::{
    Command,
    workers::{Failure, WAIT_FOR_MODEL, Workers, blocking, no_such},
};
use crate::{
    io_pool::lock,
    model::compare::compare,
    procmaps::parse_maps,
    protocol::{ErrorKind, VerifyReport},
    tracker::SeedReason,
};

impl Workers {
    /// One comparison; None when the process changed while /proc was read.
    async fn try_verify(
        &self,
        pid: u32,
        deadline: Instant,
    ) -> Result<Option<VerifyReport>, Failure> {
        let before = self.ready_view(pid, (0, false), deadline).await?;
        let text = blocking(move || std::fs::read_to_string(format!("/proc/{pid}/maps")))
            .await?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => no_such(pid),
                std::io::ErrorKind::PermissionDenied => (
                    ErrorKind::PermissionDenied,
                    format!("the daemon may not read /proc/{pid}/maps: {e}"),
                ),
                _ => (
                    ErrorKind::Internal,
                    format!("reading /proc/{pid}/maps: {e}"),
                ),
            })?;
        let after = self.ready_view(pid, (0, false), deadline).await?;
        if after.applied_events != before.applied_events {
            return Ok(None);
        }
        blocking(move || {
            let kernel =
                parse_maps(&text).map_err(|e| (ErrorKind::Internal, format!("pid {pid}: {e}")))?;
            let differences = compare(&after.space, &kernel);
            Ok(Some(VerifyReport {
                pid,
                start_time_ticks: after.start_time_ticks,
                comm: after.comm.clone(),
                agree: differences.is_empty(),
                model_regions: after.space.region_count(),
                kernel_regions: kernel.len(),
                differences,
            }))
        })
        .await?
    }

    pub(super) async fn verify(&self, pid: u32) -> Result<VerifyReport, Failure> {
        let deadline = Instant::now() + WAIT_FOR_MODEL;
        let kept_changing = || {
            (
                ErrorKind::NotReady,
                format!(
                    "pid {pid} kept changing (or awaiting its /proc snapshot) for 2 s; try again, or stop it first"
                ),
            )
        };
        loop {
            match self.try_verify(pid, deadline).await {
                Ok(Some(report)) => return Ok(report),
                Ok(None) => {}
                Err((ErrorKind::NotReady, _)) => return Err(kept_changing()),
                Err(failure) => return Err(failure),
            }
            if Instant::now() >= deadline {
                return Err(kept_changing());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Compares `sample` with /proc and resyncs drifted models; a round
    /// still running when the next is due makes that one skip.
    pub(super) fn start_verify_round(self: &Arc<Self>, sample: Vec<u32>) {
        if self.verifying.swap(true, Ordering::SeqCst) {
            return;
        }
        let workers = Arc::clone(self);
        // Called on the loop: the round runs on the workers' runtime.
        self.runtime.spawn(async move {
            let mut drifted_regions = 0u64;
            for pid in sample {
                lock(&workers.drift).processes_checked += 1;
                let deadline = Instant::now() + WAIT_FOR_MODEL;
                if let Ok(Some(report)) = workers.try_verify(pid, deadline).await
                    && !report.agree
                {
                    drifted_regions += report.differences.len() as u64;
                    log::info!(
                        "pid {pid} ({}) drifted by {} regions; resyncing",
                        report.comm,
                        report.differences.len()
                    );
                    let _ = workers.send(Command::Seed(pid, SeedReason::Drift)).await;
                }
            }
            {
                let mut drift = lock(&workers.drift);
                drift.rounds += 1;
                drift.last_round_regions = drifted_regions;
            }
            workers.verifying.store(false, Ordering::SeqCst);
        });
    }
}
