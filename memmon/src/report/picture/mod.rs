//! `memmon map`: the address space as the seed documents draw it, high
//! addresses at the top, one band per region or gap with a height that
//! grows with log2 of its size, and runs of small regions collapsed into
//! one labelled band. Built from the same [`Layout`] `query` prints; the
//! terminal and SVG renderers draw the same [`Picture`].

mod bands;
mod palette;
mod scale;
mod svg;
#[cfg(test)]
mod tests;
mod text;

use std::{collections::BTreeMap, ops::Range};

pub use palette::Colour;
pub use scale::rows;
pub use svg::render_svg;
pub use text::render_text;

use super::{Layout, RegionView, human_size, parse_hex};
use crate::{classify::RegionKind, escape::escape};

/// A stretch no region or gap covers: above user space, below [vsyscall].
pub const HOLE: &str = "kernel's half (no user mappings)";

/// Past this many bands, runs of small regions of any kind collapse too.
pub const DEFAULT_MAX_BANDS: usize = 120;

/// One horizontal band of the picture: a region, a gap, or a collapsed run
/// of regions (with the gaps between them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Band {
    pub start: u64,
    pub end: u64,
    /// Indices into `Layout::regions` (empty for a gap).
    pub regions: Range<usize>,
    /// Indices into `Layout::gaps`.
    pub gaps: Range<usize>,
    pub collapsed: bool,
}

impl Band {
    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    /// The one region this band draws, if it is not a gap or a run.
    pub fn region(&self) -> Option<usize> {
        (!self.collapsed && self.regions.len() == 1).then_some(self.regions.start)
    }
}

/// What the picture draws, high addresses first.
#[derive(Debug)]
pub struct Picture<'a> {
    pub layout: &'a Layout,
    pub bands: Vec<Band>,
}

impl<'a> Picture<'a> {
    /// Bands for every region and gap of `layout`; with more than
    /// `max_bands`, runs of ever larger small regions collapse until it fits
    /// (or only large regions are left).
    pub fn new(layout: &'a Layout, max_bands: usize) -> Self {
        Picture {
            layout,
            bands: bands::build(layout, max_bands),
        }
    }

    /// Region counts by kind in a band (one entry for a single region).
    pub fn kinds_in(&self, band: &Band) -> BTreeMap<RegionKind, usize> {
        let mut out = BTreeMap::new();
        for r in &self.layout.regions[band.regions.clone()] {
            *out.entry(r.kind).or_default() += 1;
        }
        out
    }

    /// Bytes mapped in a band (its gaps excluded).
    pub fn mapped_in(&self, band: &Band) -> u64 {
        self.layout.regions[band.regions.clone()]
            .iter()
            .map(|r| r.size)
            .sum()
    }

    /// Kinds drawn, for the legend, in the picture's top-to-bottom order.
    pub fn legend(&self) -> Vec<RegionKind> {
        let mut seen = Vec::new();
        for band in &self.bands {
            for r in &self.layout.regions[band.regions.clone()] {
                if !seen.contains(&r.kind) {
                    seen.push(r.kind);
                }
            }
        }
        seen
    }

    /// The executable's path as maps shows it.
    fn exe(&self) -> Option<&str> {
        self.layout.exe.as_deref()
    }

    /// The object a single-region band belongs to, for grouping a
    /// library's or the executable's segments under one heading.
    pub fn object_of(&self, band: &Band) -> Option<&str> {
        let r = &self.layout.regions[band.region()?];
        match r.kind {
            RegionKind::Text | RegionKind::Rodata | RegionKind::Data | RegionKind::Bss => {
                r.object.as_deref()
            }
            _ => None,
        }
    }

    /// The heading of an object's group: its file name, `(executable)` for
    /// the program itself.
    pub fn object_heading(&self, object: &str) -> String {
        let name = escape(object.rsplit('/').next().unwrap_or(object)).into_owned();
        if self.exe().is_some_and(|e| same_path(e, object)) {
            format!("{name} (executable)")
        } else {
            name
        }
    }

    /// A band's words, in the seeds' vocabulary: `[stack]`, `thread stack`,
    /// `guard page`, `text`, `gap`, `412 regions: 400 anon, 12 file`.
    pub fn label(&self, band: &Band) -> String {
        if band.collapsed {
            let kinds = self.kinds_in(band);
            let parts: Vec<String> = kinds
                .iter()
                .map(|(kind, n)| format!("{n} {}", kind_words(*kind)))
                .collect();
            return format!(
                "{} regions: {} (collapsed)",
                band.regions.len(),
                parts.join(", ")
            );
        }
        match band.region() {
            Some(i) => region_words(&self.layout.regions[i]),
            None if band.gaps.is_empty() => HOLE.into(),
            None => "gap".into(),
        }
    }

    /// The tooltip of one region: range, size, perms, path and origin.
    pub fn region_tooltip(&self, i: usize) -> String {
        let r = &self.layout.regions[i];
        let mut out = format!(
            "{}-{} {} {} {}",
            r.start,
            r.end,
            human_size(r.size),
            r.perms,
            r.kind
        );
        if !r.path.is_empty() {
            out.push_str(&format!(" {}", escape(&r.path)));
        }
        if let Some(object) = &r.object
            && *object != r.path
        {
            out.push_str(&format!(" of {}", escape(object)));
        }
        if let Some(seg) = r.segment {
            out.push_str(&format!(" segment {seg}"));
        }
        if !r.sections.is_empty() {
            out.push_str(&format!(" ({})", escape(&r.sections.join(" "))));
        }
        if let Some(note) = &r.note {
            out.push_str(&format!(" [{}]", escape(note)));
        }
        out
    }

    /// The tooltip of a gap (or of the kernel's half).
    pub fn gap_tooltip(&self, band: &Band) -> String {
        let what = if band.gaps.is_empty() {
            HOLE
        } else {
            "unmapped (gap)"
        };
        format!(
            "{}-{} {} {what}",
            super::hex(band.start),
            super::hex(band.end),
            human_size(band.size())
        )
    }

    /// The band holding the live entry point, for the `◀ entry` mark.
    pub fn entry_band(&self) -> Option<usize> {
        let entry = parse_hex(self.layout.elf.as_ref()?.live_entry.as_deref()?)?;
        self.bands
            .iter()
            .position(|b| b.start <= entry && entry < b.end && !b.regions.is_empty())
    }

    /// The band drawing `[heap]`, above which the program break is drawn.
    pub fn heap_band(&self) -> Option<usize> {
        self.bands.iter().position(|b| {
            b.region()
                .is_some_and(|i| self.layout.regions[i].kind == RegionKind::Heap)
        })
    }

    /// The lines above the picture: who, load bias, entry, ASLR.
    pub fn header(&self) -> Vec<String> {
        let l = self.layout;
        let mut lines = vec![format!(
            "pid {} ({})  {}",
            l.pid,
            escape(&l.comm),
            escape(l.exe.as_deref().unwrap_or("-"))
        )];
        let elf = l.elf.as_ref();
        lines.push(format!(
            "load bias {}  entry {}  ASLR {}  {} regions, {} mapped",
            elf.and_then(|e| e.load_bias.as_deref()).unwrap_or("?"),
            elf.and_then(|e| e.live_entry.as_deref()).unwrap_or("?"),
            serde_json::to_value(l.aslr.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            l.regions.len(),
            human_size(l.mapped_bytes)
        ));
        lines
    }

    /// The program break line's text, when there is a heap.
    pub fn break_label(&self) -> Option<String> {
        let h = self.layout.heap.as_ref()?;
        Some(format!(
            "program break {} (heap end {}, {} above the break)",
            h.program_break,
            h.end,
            human_size(h.top_pad)
        ))
    }
}

fn same_path(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.strip_suffix(" (deleted)").unwrap_or(s).to_owned();
    strip(a) == strip(b)
}

/// A kind in the seeds' words.
pub fn kind_words(kind: RegionKind) -> &'static str {
    use RegionKind::*;
    match kind {
        Text => "text",
        Rodata => "rodata",
        Data => "data",
        Bss => "bss",
        Heap => "[heap]",
        MmapChunk => "mmap'd chunk",
        Arena => "arena",
        ThreadStack => "thread stack",
        Guard => "guard page",
        Stack => "[stack]",
        Vdso => "[vdso]",
        Vvar => "[vvar]",
        Vsyscall => "[vsyscall]",
        File => "file",
        Shm => "shm",
        Anon => "anon",
    }
}

fn region_words(r: &RegionView) -> String {
    let words = kind_words(r.kind);
    match r.kind {
        RegionKind::File | RegionKind::Shm | RegionKind::Anon if !r.path.is_empty() => {
            let name = r.path.rsplit('/').next().unwrap_or(&r.path);
            format!("{words} {}", escape(name))
        }
        _ => words.to_owned(),
    }
}
