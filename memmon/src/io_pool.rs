//! A few threads for I/O on paths that monitored processes control (their
//! mapped files, /proc/PID/mem): such a read can block for as long as the
//! filesystem behind it likes (a stopped FUSE server, a dead NFS server).
//! Callers wait with a deadline, so a stuck file costs at most the worker
//! it holds, never the caller; with every worker stuck, jobs fail fast.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use thiserror::Error;

/// Workers, so a few stuck files leave others readable.
pub const DEFAULT_THREADS: usize = 4;
/// Jobs that may wait for a worker before new ones are refused.
const QUEUE: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum IoError {
    #[error("unreadable (timed out)")]
    TimedOut,
    #[error("unreadable (I/O workers busy)")]
    Busy,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct IoPool {
    jobs: mpsc::SyncSender<Job>,
    /// Workers waiting for a job.
    idle: Arc<AtomicUsize>,
}

impl IoPool {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let idle = Arc::new(AtomicUsize::new(threads.max(1)));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let idle = Arc::clone(&idle);
            thread::Builder::new()
                .name(format!("memmon-io-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                idle.fetch_sub(1, Ordering::SeqCst);
                                job();
                                idle.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => return, // the pool was dropped
                        }
                    }
                })?;
        }
        Ok(Self { jobs, idle })
    }

    /// As [`IoPool::run`], but refused at once when no worker is idle: for
    /// a caller that must not wait behind stuck reads (the daemon's loop).
    pub fn run_if_idle<T: Send + 'static>(
        &self,
        deadline: Duration,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IoError> {
        if self.idle.load(Ordering::SeqCst) == 0 {
            return Err(IoError::Busy);
        }
        self.run(deadline, job)
    }

    /// Runs `job` on a worker and waits for it at most `deadline`. A job
    /// that times out still runs to its end, holding its worker.
    pub fn run<T: Send + 'static>(
        &self,
        deadline: Duration,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IoError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .try_send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .map_err(|_| IoError::Busy)?;
        rx.recv_timeout(deadline).map_err(|_| IoError::TimedOut)
    }
}

/// A poisoned lock only means a thread panicked while holding it; the data
/// (caches, counters) stays usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_slow_reader_costs_its_worker_not_the_caller() {
        let pool = IoPool::new(2).unwrap();
        let (release, stuck) = mpsc::channel::<()>();
        let stuck = Arc::new(Mutex::new(stuck));
        let started = Instant::now();
        let blocked = Arc::clone(&stuck);
        // A "read" that blocks until released, like a stopped FUSE server.
        let slow = pool.run(Duration::from_millis(100), move || {
            let _ = blocked.lock().unwrap().recv();
            1
        });
        assert_eq!(slow, Err(IoError::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(1));
        // The other worker still answers.
        assert_eq!(pool.run(Duration::from_secs(5), || 2), Ok(2));
        release.send(()).unwrap();
        assert_eq!(pool.run(Duration::from_secs(5), || 3), Ok(3));
    }

    #[test]
    fn with_every_worker_stuck_jobs_fail_within_their_deadline() {
        let pool = IoPool::new(1).unwrap();
        let (release, stuck) = mpsc::channel::<()>();
        let _ = pool.run(Duration::from_millis(10), move || stuck.recv());
        let started = Instant::now();
        assert_eq!(
            pool.run(Duration::from_millis(50), || 1),
            Err(IoError::TimedOut)
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        // Callers that must not wait are refused without any wait.
        let started = Instant::now();
        assert_eq!(
            pool.run_if_idle(Duration::from_secs(5), || 1),
            Err(IoError::Busy)
        );
        assert!(started.elapsed() < Duration::from_millis(100));
        drop(release);
        // Freed, the worker runs the queued job, then new ones.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(pool.run_if_idle(Duration::from_secs(5), || 4), Ok(4));
    }
}
