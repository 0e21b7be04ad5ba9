//! Model + ELF files + rules -> [`Layout`].

use std::{fs::File, os::unix::fs::FileExt as _, sync::Arc};

use super::{
    ElfCache, ElfView, EventView, GapView, HeapView, Layout, RegionView, SegmentView, WxView, hex,
};
use crate::{
    classify::{ClassifyInput, classify, gaps, thread_stack_pointers, totals_by_kind},
    elf::{ElfInfo, ElfType, load_bias},
    model::Backing,
    rules::{RandomizeVaSpace, aslr_verdict, wx_findings},
    tracker::ProcessState,
};

/// The end of x86_64 user space with 4-level paging (128 TiB).
const USER_SPACE_END: u64 = 1 << 47;

fn elf_type_name(t: ElfType) -> String {
    match t {
        ElfType::Exec => "EXEC".into(),
        ElfType::Dyn => "DYN".into(),
        ElfType::Rel => "REL".into(),
        ElfType::Core => "CORE".into(),
        ElfType::Other(n) => format!("{n:#x}"),
    }
}

fn elf_view(path: &str, info: &ElfInfo, load_bias: Option<u64>) -> ElfView {
    ElfView {
        path: path.to_owned(),
        elf_type: elf_type_name(info.elf_type),
        pie: info.is_pie,
        entry: hex(info.entry),
        interpreter: info.interpreter.clone(),
        load_bias: load_bias.map(hex),
        live_entry: load_bias.map(|b| hex(b.wrapping_add(info.entry))),
        stack_executable: info.stack_executable,
        segments: info
            .program_headers
            .iter()
            .enumerate()
            .map(|(index, ph)| SegmentView {
                index,
                kind: ph.kind.clone(),
                offset: hex(ph.offset),
                vaddr: hex(ph.vaddr),
                filesz: ph.filesz,
                memsz: ph.memsz,
                flags: ph.flags.to_string(),
                align: ph.align,
                sections: ph.sections.clone(),
            })
            .collect(),
    }
}

/// The parsed ELF objects a process maps (by path), and its executable's.
pub(super) fn mapped_elfs(
    state: &ProcessState,
    elf_cache: &mut ElfCache,
) -> (crate::classify::ElfMap, Option<Arc<ElfInfo>>) {
    let pid = state.pid;
    let mut elfs = crate::classify::ElfMap::new();
    let mut exe_elf: Option<Arc<ElfInfo>> = None;
    for region in state.space.regions() {
        let Backing::File { path, .. } = &region.backing else {
            continue;
        };
        if elfs.contains_key(path) || path.starts_with("/memfd:") || path.starts_with("/SYSV") {
            continue;
        }
        let link = format!("/proc/{pid}/map_files/{:x}-{:x}", region.start, region.end);
        if let Some(info) = elf_cache.get(path, &link) {
            if state.exe.as_deref() == Some(path.as_str()) {
                exe_elf = Some(info.clone());
            }
            elfs.insert(path.clone(), info);
        }
    }
    (elfs, exe_elf)
}

/// Builds the layout of one tracked process. Reads the mapped ELF files
/// (cached), the threads' stack pointers and 16 bytes at candidate malloc
/// chunks; everything else comes from the model.
pub fn build_layout(
    state: &ProcessState,
    elf_cache: &mut ElfCache,
    randomize_va_space: &RandomizeVaSpace,
    events: usize,
) -> Layout {
    let pid = state.pid;
    let space = &state.space;
    let (elfs, exe_elf) = mapped_elfs(state, elf_cache);
    let stack_pointers = thread_stack_pointers(pid);
    let mem = File::open(format!("/proc/{pid}/mem")).ok();
    let probe = |addr: u64| -> Option<[u8; 16]> {
        let mut buf = [0u8; 16];
        mem.as_ref()?.read_exact_at(&mut buf, addr).ok()?;
        Some(buf)
    };
    let classification = classify(&ClassifyInput {
        space,
        exe: state.exe.as_deref(),
        elfs: &elfs,
        thread_stack_pointers: &stack_pointers,
        probe: Some(&probe),
    });
    let regions: Vec<RegionView> = space
        .vmas()
        .zip(&classification.regions)
        .map(|(r, c)| RegionView {
            start: hex(r.start),
            end: hex(r.end),
            size: r.len(),
            perms: r.perms.to_string(),
            offset: if r.backing.is_file() { r.offset } else { 0 },
            path: space.display_path(&r),
            kind: c.kind,
            object: c.object.clone(),
            segment: c.segment,
            sections: c.sections.clone(),
        })
        .collect();
    let mut objects: Vec<(u64, ElfView)> = elfs
        .iter()
        .map(|(path, info)| {
            let mappings: Vec<(u64, u64)> = space
                .regions()
                .filter(|r| matches!(&r.backing, Backing::File { path: p, .. } if p == path))
                .map(|r| (r.start, r.offset))
                .collect();
            let first = mappings.first().map_or(0, |m| m.0);
            (first, elf_view(path, info, load_bias(info, &mappings)))
        })
        .collect();
    // In address order, as readers of /proc expect.
    objects.sort_by_key(|(first, _)| *first);
    let objects: Vec<ElfView> = objects.into_iter().map(|(_, view)| view).collect();
    let elf = match (&state.exe, &exe_elf) {
        (Some(path), Some(info)) => Some(elf_view(path, info, classification.exe_load_bias)),
        _ => None,
    };
    Layout {
        pid,
        comm: state.comm.clone(),
        exe: state.exe.clone(),
        uid: state.uid,
        aslr: aslr_verdict(
            randomize_va_space,
            state.personality.unwrap_or(0),
            exe_elf.as_deref(),
        ),
        elf,
        objects,
        wx: wx_findings(space)
            .into_iter()
            .map(|w| WxView {
                start: hex(w.start),
                end: hex(w.end),
                perms: w.perms,
                path: w.path,
                reason: w.reason,
            })
            .collect(),
        heap: classification.heap.map(|h| HeapView {
            start: hex(h.start),
            end: hex(h.end),
            size: h.end - h.start,
            program_break: hex(h.program_break),
            requested: h.requested,
            top_pad: h.top_pad_bytes,
        }),
        totals: totals_by_kind(&classification.regions),
        mapped_bytes: space.mapped_bytes(),
        // The stretch between user space and [vsyscall] is the kernel's half,
        // not a gap in this process's layout.
        gaps: gaps(space)
            .into_iter()
            .filter(|g| g.end <= USER_SPACE_END)
            .map(|g| GapView {
                start: hex(g.start),
                end: hex(g.end),
                size: g.size,
            })
            .collect(),
        regions,
        events: state
            .history
            .iter()
            .skip(state.history.len().saturating_sub(events))
            .map(|h| EventView {
                ts_ns: h.meta.ts_ns,
                line: h.to_line(),
            })
            .collect(),
    }
}
