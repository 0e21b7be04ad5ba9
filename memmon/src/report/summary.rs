//! One line per process for `memmon ps`, `memmon aslr` and `memmon wx`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ElfCache, build::mapped_elfs};
use crate::{
    classify::{ClassifyInput, RegionKind, classify, totals_by_kind},
    rules::{AslrVerdict, RandomizeVaSpace, aslr_verdict, wx_findings},
    tracker::ProcessState,
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
}

/// A cheap summary: classification without reading the target's memory
/// or its threads' stack pointers (MAP_STACK still finds thread stacks).
pub fn summarize(
    state: &ProcessState,
    elf_cache: &mut ElfCache,
    randomize_va_space: &RandomizeVaSpace,
) -> ProcessSummary {
    let (elfs, exe_elf) = mapped_elfs(state, elf_cache);
    let classification = classify(&ClassifyInput {
        space: &state.space,
        exe: state.exe.as_deref(),
        elfs: &elfs,
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
            exe_elf.as_deref(),
        ),
        wx_count: wx_findings(&state.space).len(),
    }
}
