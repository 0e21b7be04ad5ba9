//! Helpers shared by memmon's integration tests (memmon/tests/support) and
//! xtask's benchmarks, so each fact about running memmon lives once: when a
//! test may skip, reading a child's lines, scratch directories, the
//! daemon's command line and ready line, and reading /metrics.
//!
//! std only and independent of the memmon crate: xtask builds it before
//! bpf-linker (which memmon's build script needs) is installed.

mod ci;
mod daemon;
mod dir;
mod elf;
mod lines;
mod metrics;
mod process;

pub use ci::{is_ci, skip};
pub use daemon::{DAEMON_READY_LINE, daemon_command, metrics_url, tracked_processes};
pub use dir::TempDir;
pub use elf::crafted_elf;
pub use lines::LineCollector;
pub use metrics::{http_get, metric};
pub use process::{proc_state, state_of, wait_timeout};
