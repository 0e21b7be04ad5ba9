//! One line per process for `memmon ps`, `memmon aslr` and `memmon wx`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ElfReader, build::mapped_elfs};
use crate::{
    classify::{ClassifyInput, RegionKind, classify, totals_by_kind},
    rules::{AslrVerdict, RandomizeVaSpace, aslr_verdict, wx_findings},
    tracker::ProcessView,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessSummary {
    pub pid: u32,
    pub comm: String,
    pub uid: Option<u32>,
    /// The user's name as the daemon's system knows it.
    #[serde(default)]
    pub user: Option<String>,
    pub vmas: usize,
    pub mapped_bytes: u64,
    pub by_kind: BTreeMap<RegionKind, u64>,
    /// Region counts by kind.
    #[serde(default)]
    pub regions_by_kind: BTreeMap<RegionKind, u64>,
    pub aslr: AslrVerdict,
    pub wx_count: usize,
    /// Memory syscalls the process called since memmon began tracking it
    /// (`memmon top` shows the rate).
    #[serde(default)]
    pub syscalls: u64,
    /// Its innermost systemd unit (`*.service`, `*.scope`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Mapped files that could not be read, as "path: why" (e.g.
    /// "unreadable (timed out)"); what they would tell is missing above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl ProcessSummary {
    /// False for kernel threads (and exited processes not yet reaped):
    /// they map nothing, so there is no layout to show.
    pub fn has_address_space(&self) -> bool {
        self.vmas > 0
    }

    /// The fields that change without the model: syscall counts and unit.
    pub fn with_live_fields(mut self, state: &ProcessView) -> Self {
        self.syscalls = state.syscalls.called().map(|(_, c)| c.calls).sum();
        self.unit = state
            .cgroup
            .as_deref()
            .and_then(crate::metrics::unit_of)
            .map(str::to_owned);
        self
    }
}

/// A cheap summary: classification without reading the target's memory
/// or its threads' stack pointers (MAP_STACK still finds thread stacks).
pub fn summarize(
    state: &ProcessView,
    reader: &ElfReader,
    randomize_va_space: &RandomizeVaSpace,
) -> ProcessSummary {
    let mapped = mapped_elfs(state, reader);
    let classification = classify(&ClassifyInput {
        space: &state.space,
        exe: state.exe.as_deref(),
        elfs: &mapped.elfs,
        thread_stack_pointers: &[],
        probe: None,
    });
    ProcessSummary {
        pid: state.pid,
        comm: state.comm.clone(),
        uid: state.uid,
        user: state.uid.and_then(crate::users::user_name),
        vmas: state.space.region_count(),
        mapped_bytes: state.space.mapped_bytes(),
        by_kind: totals_by_kind(&classification.regions),
        regions_by_kind: classification
            .regions
            .iter()
            .fold(BTreeMap::new(), |mut counts, r| {
                *counts.entry(r.kind).or_default() += 1;
                counts
            }),
        aslr: aslr_verdict(
            randomize_va_space,
            state.personality.unwrap_or(0),
            mapped.exe.as_deref(),
        ),
        wx_count: wx_findings(&state.space).len(),
        // Both change without the model changing: set per request (see
        // `with_live_fields`), not cached.
        syscalls: 0,
        unit: None,
        notes: {
            let mut notes: Vec<String> = mapped
                .unreadable
                .iter()
                .map(|(path, why)| format!("{path}: {why}"))
                .collect();
            notes.sort();
            notes
        },
    }
}
