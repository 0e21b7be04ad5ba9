//! Model + ELF files + rules -> [`Layout`].

use std::{collections::HashMap, fs::File, os::unix::fs::FileExt as _, sync::Arc};

use super::{
    ElfRead, ElfReader, ElfView, EventView, GapView, HeapView, Layout, RegionView, SegmentView,
    WxView, hex,
};
use crate::{
    classify::{
        Classification, ClassifyInput, ElfMap, classify, gaps, thread_stack_pointers,
        totals_by_kind,
    },
    elf::{ElfInfo, ElfType, load_bias},
    model::Backing,
    rules::{RandomizeVaSpace, aslr_verdict, wx_findings},
    tracker::ProcessView,
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

/// The ELF objects a process maps, parsed (by path), its executable's,
/// and the files that could not be read, with why.
pub(super) struct MappedElfs {
    pub elfs: ElfMap,
    pub exe: Option<Arc<ElfInfo>>,
    pub unreadable: HashMap<String, String>,
}

pub(super) fn mapped_elfs(state: &ProcessView, reader: &ElfReader) -> MappedElfs {
    let pid = state.pid;
    let mut mapped = MappedElfs {
        elfs: ElfMap::new(),
        exe: None,
        unreadable: HashMap::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for region in state.space.regions() {
        let Backing::File {
            path,
            dev_major,
            dev_minor,
            ..
        } = &region.backing
        else {
            continue;
        };
        if path.starts_with("/memfd:") || path.starts_with("/SYSV") || !seen.insert(path) {
            continue;
        }
        let link = format!("/proc/{pid}/map_files/{:x}-{:x}", region.start, region.end);
        match reader.read(pid, path, link, (*dev_major, *dev_minor)) {
            ElfRead::Elf(info) => {
                if state.exe.as_deref() == Some(path.as_str()) {
                    mapped.exe = Some(info.clone());
                }
                mapped.elfs.insert(path.clone(), info);
            }
            ElfRead::NotElf => {}
            ElfRead::Unreadable(why) => {
                mapped.unreadable.insert(path.clone(), why);
            }
        }
    }
    mapped
}

/// Classifies with the threads' stack pointers and probes of the target's
/// memory, on the I/O pool: a page of a stalled file's mapping can block a
/// /proc/PID/mem read. Past the deadline, classifies without them.
fn classify_probing(
    state: &ProcessView,
    elfs: &ElfMap,
    reader: &ElfReader,
) -> (Classification, Option<String>) {
    let pid = state.pid;
    let (space, exe, owned_elfs) = (Arc::clone(&state.space), state.exe.clone(), elfs.clone());
    let probing = move || {
        let stack_pointers = thread_stack_pointers(pid);
        let mem = File::open(format!("/proc/{pid}/mem")).ok();
        let probe = |addr: u64| -> Option<[u8; 16]> {
            let mut buf = [0u8; 16];
            mem.as_ref()?.read_exact_at(&mut buf, addr).ok()?;
            Some(buf)
        };
        classify(&ClassifyInput {
            space: &space,
            exe: exe.as_deref(),
            elfs: &owned_elfs,
            thread_stack_pointers: &stack_pointers,
            probe: Some(&probe),
        })
    };
    match reader.pool().run(reader.deadline(), probing) {
        Ok(classification) => (classification, None),
        Err(err) => {
            let unprobed = classify(&ClassifyInput {
                space: &state.space,
                exe: state.exe.as_deref(),
                elfs,
                thread_stack_pointers: &[],
                probe: None,
            });
            (unprobed, Some(format!("process memory and threads {err}")))
        }
    }
}

/// Builds the layout of one tracked process. Reads the mapped ELF files
/// (cached), the threads' stack pointers and 16 bytes at candidate malloc
/// chunks; everything else comes from the model.
pub fn build_layout(
    state: &ProcessView,
    reader: &ElfReader,
    randomize_va_space: &RandomizeVaSpace,
    events: usize,
) -> Layout {
    let pid = state.pid;
    let space = &state.space;
    let MappedElfs {
        elfs,
        exe: exe_elf,
        unreadable,
    } = mapped_elfs(state, reader);
    let (classification, memory_note) = classify_probing(state, &elfs, reader);
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
            note: match &r.backing {
                Backing::File { path, .. } => unreadable.get(path).cloned(),
                _ => None,
            },
            rss: None,
            origin: None,
            last_changed: None,
            origins: Vec::new(),
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
        start_time_ticks: state.start_time_ticks,
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
        rss_totals: None,
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
        notes: memory_note.into_iter().collect(),
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
