//! Comparing models with /proc/PID/maps: on request and periodically.

use std::time::Duration;

use crate::{
    model::compare::compare,
    procmaps::parse_maps,
    protocol::{ErrorKind, VerifyReport},
    tracker::SeedReason,
};

use super::Daemon;

/// Attempts before a verification gives up on a process that keeps changing.
const ATTEMPTS: usize = 100;

enum Outcome {
    Report(VerifyReport),
    /// The process changed while it was read: try again.
    Raced,
    Waiting,
}

impl Daemon {
    /// One comparison, if the process held still while /proc was read.
    fn try_verify(&mut self, pid: u32) -> Result<Outcome, (ErrorKind, String)> {
        self.catch_up();
        let no_such = || (ErrorKind::NoSuchPid, format!("no such process: pid {pid}"));
        let Some(state) = self.tracker.process(pid) else {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                self.tracker.request_seed(pid, SeedReason::Unknown);
                self.pump_seed_requests();
                return Ok(Outcome::Waiting);
            }
            return Err(no_such());
        };
        if state.awaiting_snapshot() {
            return Ok(Outcome::Waiting);
        }
        let before = state.applied_events;
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => no_such(),
                std::io::ErrorKind::PermissionDenied => (
                    ErrorKind::PermissionDenied,
                    format!("the daemon may not read /proc/{pid}/maps: {e}"),
                ),
                _ => (
                    ErrorKind::Internal,
                    format!("reading /proc/{pid}/maps: {e}"),
                ),
            })?;
        let kernel =
            parse_maps(&text).map_err(|e| (ErrorKind::Internal, format!("pid {pid}: {e}")))?;
        self.catch_up();
        let Some(state) = self.tracker.process(pid) else {
            return Err(no_such());
        };
        if state.applied_events != before || state.awaiting_snapshot() {
            return Ok(Outcome::Raced);
        }
        let differences = compare(&state.space, &kernel);
        Ok(Outcome::Report(VerifyReport {
            pid,
            comm: state.comm.clone(),
            agree: differences.is_empty(),
            model_regions: state.space.region_count(),
            kernel_regions: kernel.len(),
            differences,
        }))
    }

    pub(super) async fn verify(&mut self, pid: u32) -> Result<VerifyReport, (ErrorKind, String)> {
        for _ in 0..ATTEMPTS {
            match self.try_verify(pid)? {
                Outcome::Report(report) => return Ok(report),
                Outcome::Raced | Outcome::Waiting => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            }
        }
        Err((
            ErrorKind::NotReady,
            format!(
                "pid {pid} kept changing (or awaiting its /proc snapshot) for 2 s; try again, or stop it first"
            ),
        ))
    }

    /// Compares a rotating sample of models with /proc and resyncs drifted ones.
    pub(super) fn verify_round(&mut self) {
        let mut pids: Vec<u32> = self
            .tracker
            .processes()
            .filter(|p| !p.awaiting_snapshot())
            .map(|p| p.pid)
            .collect();
        pids.sort_unstable();
        let start = pids.partition_point(|&p| p <= self.verify_cursor);
        let sample: Vec<u32> = pids[start..]
            .iter()
            .chain(pids[..start].iter())
            .take(self.config.verify_batch)
            .copied()
            .collect();
        let mut drifted_regions = 0u64;
        for pid in &sample {
            self.verify_cursor = *pid;
            self.drift.processes_checked += 1;
            if let Ok(Outcome::Report(report)) = self.try_verify(*pid)
                && !report.agree
            {
                drifted_regions += report.differences.len() as u64;
                log::info!(
                    "pid {pid} ({}) drifted by {} regions; resyncing",
                    report.comm,
                    report.differences.len()
                );
                self.tracker.request_seed(*pid, SeedReason::Drift);
            }
        }
        self.drift.rounds += 1;
        self.drift.last_round_regions = drifted_regions;
        self.pump_seed_requests();
    }
}
