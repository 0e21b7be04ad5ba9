//! Matching an ELF object's live mappings to its `PT_LOAD` segments.

use std::collections::HashMap;

use super::{ClassifiedRegion, RegionKind, strip_deleted};
use crate::elf::{ElfInfo, Section, load_bias};
use crate::model::{Backing, PAGE_SIZE, Region, page_align_up};

/// One mapped ELF object and where it was loaded.
pub(super) struct Layout<'a> {
    pub path: String,
    pub info: &'a ElfInfo,
    pub bias: u64,
}

/// Layouts of every file-backed path that has a parsed ELF and whose
/// mappings fit its segments.
pub(super) fn layouts<'a>(
    regions: &[&Region],
    paths: &[String],
    elfs: &'a super::ElfMap,
) -> Vec<Layout<'a>> {
    // In first-mapped order; the index keeps this linear in the regions.
    let mut by_path: Vec<(&str, Vec<(u64, u64)>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (r, path) in regions.iter().zip(paths) {
        if !matches!(r.backing, Backing::File { .. }) {
            continue;
        }
        let i = *index.entry(path).or_insert_with(|| {
            by_path.push((path, Vec::new()));
            by_path.len() - 1
        });
        by_path[i].1.push((r.start, r.offset));
    }
    by_path
        .into_iter()
        .filter_map(|(path, maps)| {
            let info = elfs.get(path).or_else(|| elfs.get(strip_deleted(path)))?;
            Some(Layout {
                path: path.into(),
                info,
                bias: load_bias(info, &maps)?,
            })
        })
        .collect()
}

const fn page_down(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}

impl<'a> Layout<'a> {
    /// Text, rodata, data or bss for a mapping of this object's file, or
    /// `None` when it lies outside every segment (e.g. the `---p` padding
    /// old loaders left between segments).
    pub fn classify_file_region(&self, r: &Region) -> Option<ClassifiedRegion> {
        let v = r.start.wrapping_sub(self.bias);
        let (idx, seg) = self.info.loads().find(|(_, ph)| {
            let lo = page_down(ph.vaddr);
            v >= lo
                && v < page_align_up(ph.vaddr.saturating_add(ph.memsz))
                && r.offset == page_down(ph.offset).wrapping_add(v - lo)
        })?;
        let sections = self.sections_in(idx, r);
        let kind = if r.perms.is_none() {
            RegionKind::File
        } else if seg.flags.exec || (r.perms.exec && !seg.flags.write) {
            RegionKind::Text
        } else if seg.flags.write {
            // Read-only pages of a writable segment are its RELRO part
            // (.got, .init_array, .dynamic after relocation): still data.
            // The last file page can hold nothing but the start of .bss.
            let only_bss = !sections.is_empty() && sections.iter().all(|s| s.is_nobits());
            if r.perms.write && only_bss {
                RegionKind::Bss
            } else {
                RegionKind::Data
            }
        } else if self.in_relro(r) {
            RegionKind::Data
        } else {
            RegionKind::Rodata
        };
        Some(self.classified(r, kind, idx, sections))
    }

    /// The anonymous pages the loader maps for a writable segment's
    /// `memsz` beyond the file-backed pages: the rest of .bss.
    pub fn classify_bss(&self, r: &Region) -> Option<ClassifiedRegion> {
        if !r.perms.write || r.perms.shared {
            return None;
        }
        let v = r.start.wrapping_sub(self.bias);
        let (idx, _) = self.info.loads().find(|(_, ph)| {
            ph.flags.write
                && ph.memsz > ph.filesz
                && v >= page_align_up(ph.vaddr.saturating_add(ph.filesz))
                && v < page_align_up(ph.vaddr.saturating_add(ph.memsz))
        })?;
        let sections = self.sections_in(idx, r);
        Some(self.classified(r, RegionKind::Bss, idx, sections))
    }

    fn classified(
        &self,
        r: &Region,
        kind: RegionKind,
        segment: usize,
        sections: Vec<&Section>,
    ) -> ClassifiedRegion {
        let mut names: Vec<String> = sections.into_iter().map(|s| s.name.clone()).collect();
        names.dedup();
        ClassifiedRegion {
            start: r.start,
            end: r.end,
            kind,
            object: Some(self.path.clone()),
            segment: Some(segment),
            sections: names,
        }
    }

    /// The segment's sections whose addresses overlap the region.
    fn sections_in(&self, segment: usize, r: &Region) -> Vec<&'a Section> {
        let lo = r.start.wrapping_sub(self.bias);
        self.info
            .sections_overlapping(segment, lo, lo.saturating_add(r.len()))
    }

    fn in_relro(&self, r: &Region) -> bool {
        self.info.relro.is_some_and(|relro| {
            let lo = r.start.wrapping_sub(self.bias);
            lo >= page_down(relro.start) && lo < page_align_up(relro.end)
        })
    }
}
