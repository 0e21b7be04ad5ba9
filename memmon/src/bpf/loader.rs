//! Loads the embedded object, patches its globals and attaches every program.

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{BtfTracePoint, TracePoint},
};
use memmon_common::{
    KernelLayout, TracepointLayout, counter, names,
    tracepoints::{PROGRAMS, Program, Serves, all_tracepoints},
};

use super::{
    BpfError, EventStream, KernelLog, StackTable,
    btf::read_kernel_layout,
    kernel_log,
    layout::{check_syscall_args, read_layout},
    preflight::{check_btf, check_privileges, ensure_tracefs},
};

/// 4 MiB: at ~280 k events/s a 256 KiB buffer dropped 0.1% and 1 MiB none.
pub const DEFAULT_RINGBUF_SIZE: u64 = 4 * 1024 * 1024;

/// The object built by build.rs (or its placeholder under AYA_BUILD_SKIP=1).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memmon"));

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Ring buffer size in bytes: a power of two, at least a page.
    pub ringbuf_size: u64,
    /// Read each memory syscall's call site (`config::DEFAULT_CALL_SITES`).
    pub call_sites: bool,
    /// Capture each memory syscall's user stack (`config::DEFAULT_STACKS`).
    pub stacks: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ringbuf_size: DEFAULT_RINGBUF_SIZE,
            call_sites: crate::config::DEFAULT_CALL_SITES,
            stacks: crate::config::DEFAULT_STACKS,
        }
    }
}

/// The loaded, attached programs. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    pub layout: TracepointLayout,
    pub attached: Vec<String>,
}

/// Loads and attaches a program that serves one `tp_btf` event.
fn attach_btf(ebpf: &mut Ebpf, plan: &Program, event: &str, btf: &Btf) -> Result<(), BpfError> {
    let name = plan.name;
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| BpfError::Program {
            what: format!("program {name} is missing from the object"),
            source: aya::programs::ProgramError::UnexpectedProgramType,
        })?
        .try_into()
        .map_err(|source| BpfError::Program {
            what: format!("program {name}"),
            source,
        })?;
    program
        .load(event, btf)
        .map_err(|source| BpfError::Program {
            what: format!("loading {name} for tp_btf/{event}"),
            source,
        })?;
    program.attach().map_err(|source| BpfError::Program {
        what: format!("attaching {name} to tp_btf/{event}"),
        source,
    })?;
    Ok(())
}

impl Probes {
    /// Runs the preflight checks, loads and attaches. Every failure is one
    /// clear sentence (see [`BpfError`]).
    pub fn load(options: &LoadOptions) -> Result<Self, BpfError> {
        if OBJECT.starts_with(b"memmon: eBPF build skipped") {
            return Err(BpfError::PlaceholderObject);
        }
        let size = options.ringbuf_size;
        if size < 4096 || !size.is_power_of_two() || size > u32::MAX as u64 {
            return Err(BpfError::RingbufSize(size));
        }
        check_privileges()?;
        check_btf()?;
        ensure_tracefs()?;
        let layout = read_layout()?;
        for tp in all_tracepoints().filter(|tp| tp.category == "syscalls") {
            check_syscall_args(tp)?;
        }
        // Wake the consumer once an eighth of the buffer is queued; the
        // reader's poll timer picks up anything below that.
        let wakeup_bytes: u64 = size / 8;
        let kernel_layout: KernelLayout = read_kernel_layout()?;
        let seen = super::unseen::seen_syscalls();
        let call_sites = u32::from(options.call_sites);
        let stacks = u32::from(options.stacks);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::EVENTS, size as u32)
            .override_global(names::LAYOUT, &layout, true)
            .override_global(names::KERNEL_LAYOUT, &kernel_layout, true)
            .override_global(names::WAKEUP_BYTES, &wakeup_bytes, true)
            .override_global(names::SEEN_SYSCALLS, &seen, true)
            .override_global(names::CALL_SITES, &call_sites, true)
            .override_global(names::STACKS, &stacks, true)
            .override_global(kernel_log::LEVEL_GLOBAL, &kernel_log::level(), true)
            .load(OBJECT)?;
        let mut attached = Vec::new();
        let mut btf = None;
        for plan in &PROGRAMS {
            let program_name = plan.name;
            if let [Serves::BtfTracepoint(event)] = plan.serves {
                let btf = match &mut btf {
                    Some(btf) => btf,
                    None => btf.insert(Btf::from_sys_fs().map_err(|e| BpfError::Btf {
                        what: e.to_string(),
                    })?),
                };
                attach_btf(&mut ebpf, plan, event, btf)?;
                attached.push(format!("tp_btf/{event}"));
                continue;
            }
            let program: &mut TracePoint = ebpf
                .program_mut(program_name)
                .ok_or_else(|| BpfError::Program {
                    what: format!("program {program_name} is missing from the object"),
                    source: aya::programs::ProgramError::UnexpectedProgramType,
                })?
                .try_into()
                .map_err(|source| BpfError::Program {
                    what: format!("program {program_name}"),
                    source,
                })?;
            program.load().map_err(|source| BpfError::Program {
                what: format!("loading {program_name}"),
                source,
            })?;
            for tp in plan.tracepoints() {
                program
                    .attach(tp.category, tp.name)
                    .map_err(|source| BpfError::Program {
                        what: format!("attaching {program_name} to tracepoint {tp}"),
                        source,
                    })?;
                attached.push(tp.to_string());
            }
        }
        let counters = PerCpuArray::try_from(
            ebpf.take_map(names::COUNTERS)
                .expect("COUNTERS is defined by the object"),
        )
        .map_err(|source| BpfError::Map {
            what: names::COUNTERS,
            source,
        })?;
        Ok(Self {
            ebpf,
            counters,
            layout,
            attached,
        })
    }

    /// Takes the ring buffer for reading; call once.
    pub fn event_stream(&mut self) -> Result<EventStream, BpfError> {
        let map = self.ebpf.take_map(names::EVENTS).ok_or(BpfError::Map {
            what: names::EVENTS,
            source: aya::maps::MapError::InvalidName {
                name: names::EVENTS.into(),
            },
        })?;
        let ring = RingBuf::try_from(map).map_err(|source| BpfError::Map {
            what: names::EVENTS,
            source,
        })?;
        EventStream::new(ring)
    }

    /// Takes the programs' log for forwarding ([`KernelLog::forward`]);
    /// None when it cannot be read (said once, as a warning).
    pub fn kernel_log(&mut self) -> Option<KernelLog> {
        KernelLog::take(&mut self.ebpf)
    }

    /// Takes the stack map for sharing with workers; call once. Its
    /// entries are those of `stacks = true` (none when stacks are off).
    pub fn stack_table(&mut self) -> Result<StackTable, BpfError> {
        let map = self
            .ebpf
            .take_map(names::STACK_TRACES)
            .ok_or(BpfError::Map {
                what: names::STACK_TRACES,
                source: aya::maps::MapError::InvalidName {
                    name: names::STACK_TRACES.into(),
                },
            })?;
        let map = StackTraceMap::try_from(map).map_err(|source| BpfError::Map {
            what: names::STACK_TRACES,
            source,
        })?;
        Ok(StackTable::new(map))
    }

    /// Stacks the kernel could not store, by reason (`map_full`,
    /// `collision`, `other`).
    pub fn stack_capture_failures(&self) -> Vec<(&'static str, u64)> {
        counter::STACK_FAILURES
            .iter()
            .map(|&(slot, reason)| (reason, self.counter(slot)))
            .collect()
    }

    fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }

    /// Records the kernel could not queue because the ring buffer was full.
    pub fn lost_events(&self) -> u64 {
        (counter::RINGBUF_FULL..counter::READ_CALL_SITE)
            .map(|slot| self.counter(slot))
            .sum()
    }

    /// Each error path of the kernel programs with how often it was
    /// taken: `(kind, event, count)`, labelled by `counter::ERRORS`.
    pub fn kernel_errors(&self) -> Vec<(&'static str, &'static str, u64)> {
        counter::ERRORS
            .iter()
            .map(|&(slot, kind, event)| (kind, event, self.counter(slot)))
            .collect()
    }

    /// Mmap write locks taken inside syscalls the tracepoints do not show;
    /// each marks its process lost.
    pub fn unseen_layout_changes(&self) -> u64 {
        self.counter(counter::UNSEEN_LAYOUT_CHANGE)
    }

    /// Times a process could not be marked lost because the lost-pid map
    /// was full. When this grows, every process must be resynced.
    pub fn lost_pids_full(&self) -> u64 {
        self.counter(counter::LOST_PIDS_FULL)
    }

    /// Takes and clears the set of processes that lost records: their
    /// models must be resynced from /proc.
    pub fn take_lost_pids(&mut self) -> Result<Vec<u32>, BpfError> {
        let map = self.ebpf.map_mut(names::LOST_PIDS).ok_or(BpfError::Map {
            what: names::LOST_PIDS,
            source: aya::maps::MapError::InvalidName {
                name: names::LOST_PIDS.into(),
            },
        })?;
        let mut lost: HashMap<&mut MapData, u32, u64> =
            HashMap::try_from(map).map_err(|source| BpfError::Map {
                what: names::LOST_PIDS,
                source,
            })?;
        let pids: Vec<u32> = lost.keys().filter_map(Result::ok).collect();
        for pid in &pids {
            let _ = lost.remove(pid);
        }
        Ok(pids)
    }
}
