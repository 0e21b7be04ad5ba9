//! Loading and attaching the kernel programs, and reading their ring buffer.

pub mod btf;
mod kernel_log;
mod layout;
mod loader;
mod preflight;
mod reader;
mod stacks;
pub mod unseen;

pub use kernel_log::KernelLog;
pub use layout::{TracepointId, read_layout};
pub use loader::{DEFAULT_RINGBUF_SIZE, LoadOptions, Probes};
pub use preflight::{TRACEFS, check_btf, check_privileges, ensure_tracefs};
pub use reader::EventStream;
pub use stacks::StackTable;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BpfError {
    #[error(
        "memmon needs root, or CAP_BPF and CAP_PERFMON (plus CAP_SYS_ADMIN to mount tracefs): missing {0}"
    )]
    Privileges(String),
    #[error(
        "no kernel BTF at /sys/kernel/btf/vmlinux: this kernel was built without CONFIG_DEBUG_INFO_BTF"
    )]
    NoBtf,
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed: {0}; mount it with `mount -t tracefs tracefs {TRACEFS}`"
    )]
    Tracefs(std::io::Error),
    #[error("tracepoint {0} does not exist on this kernel (no {1})")]
    MissingTracepoint(String, String),
    #[error("tracepoint {tracepoint}: cannot read field `{field}` from its format file: {why}")]
    Layout {
        tracepoint: String,
        field: String,
        why: String,
    },
    #[error(
        "this memmon binary was built with AYA_BUILD_SKIP=1 and carries no eBPF programs; rebuild it with `cargo xtask build`"
    )]
    PlaceholderObject,
    #[error(
        "--ringbuf-size {0} is invalid: it must be a power of two and at least one page (4096)"
    )]
    RingbufSize(u64),
    #[error("loading the eBPF programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("{what}: {source}")]
    Program {
        what: String,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {what}: {source}")]
    Map {
        what: &'static str,
        source: aya::maps::MapError,
    },
    #[error(
        "cannot read kernel struct layouts from BTF: {what}; memmon needs a kernel with CONFIG_DEBUG_INFO_BTF whose BTF describes these structs"
    )]
    Btf { what: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
