//! The kernel programs' own log (aya-log): they log their error paths at
//! debug level, and only when the daemon's log level is debug too (the
//! level is handed to them at load, so otherwise they write nothing).
//! Records are forwarded to the `log` crate, i.e. to the daemon's logger.

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::{Interest, unix::AsyncFd};

/// The global aya-log-ebpf reads before writing a record.
pub(super) const LEVEL_GLOBAL: &str = aya_log::LEVEL;

/// aya-log's level number for the `log` crate's current maximum (0: off).
pub(super) fn level() -> u8 {
    log::max_level() as u8
}

/// The programs' log records, waiting to be forwarded.
pub struct KernelLog {
    logger: EbpfLogger<&'static dyn log::Log>,
}

impl KernelLog {
    pub(super) fn take(ebpf: &mut Ebpf) -> Option<Self> {
        match EbpfLogger::init(ebpf) {
            Ok(logger) => Some(Self { logger }),
            Err(err) => {
                log::warn!("the kernel programs' log cannot be read: {err}");
                None
            }
        }
    }

    /// Forwards records to `log` as they come, until the programs are
    /// unloaded. Spawn it on the runtime; it only reads a ring buffer.
    pub async fn forward(self) {
        // SAFETY: the logger owns its ring buffer's map fd and keeps it open
        // (and never replaces it) for as long as the AsyncFd owns the logger.
        let registered =
            unsafe { AsyncFd::register_with_interest(self.logger, Interest::READABLE) };
        let Ok(mut fd) = registered else {
            log::warn!("the kernel programs' log cannot be polled");
            return;
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }
}
