//! The human rendering of a [`Layout`]: the table the seed documents wished
//! for, "exact human readable byte sizes instead" of raw maps lines.

use std::fmt::Write as _;

use super::{
    Layout,
    columns::{Columns, Style},
    human_size,
};
use crate::{classify::RegionKind, escape::escape};

/// An enum's name as the JSON output spells it (`partial`,
/// `writable-executable`, ...), so the text and JSON views agree.
pub fn json_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn kind_style(kind: RegionKind) -> Style {
    match kind {
        RegionKind::Text => Style::Fg(32),
        RegionKind::Rodata | RegionKind::Data | RegionKind::Bss => Style::Fg(36),
        RegionKind::Heap | RegionKind::MmapChunk | RegionKind::Arena => Style::Fg(33),
        RegionKind::Stack | RegionKind::ThreadStack | RegionKind::Guard => Style::Fg(35),
        RegionKind::Vdso | RegionKind::Vvar | RegionKind::Vsyscall => Style::Fg(34),
        RegionKind::File | RegionKind::Shm | RegionKind::Anon => Style::Plain,
    }
}

fn header(layout: &Layout) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pid {} ({})  exe {}",
        layout.pid,
        escape(&layout.comm),
        escape(layout.exe.as_deref().unwrap_or("-"))
    );
    if let Some(elf) = &layout.elf {
        let _ = writeln!(
            out,
            "ELF {}{}  entry {}{}  load bias {}  interpreter {}",
            elf.elf_type,
            if elf.pie {
                " (PIE)"
            } else if elf.elf_type == "EXEC" {
                " (not PIE)"
            } else {
                ""
            },
            elf.entry,
            elf.live_entry
                .as_deref()
                .map(|e| format!(" (live {e})"))
                .unwrap_or_default(),
            elf.load_bias.as_deref().unwrap_or("?"),
            escape(elf.interpreter.as_deref().unwrap_or("none (static)"))
        );
    }
    let _ = writeln!(
        out,
        "ASLR {}: {}",
        json_name(&layout.aslr.status),
        escape(&layout.aslr.reasons.join("; "))
    );
    if layout.wx.is_empty() {
        let _ = writeln!(
            out,
            "W^X  no writable+executable or executable anonymous memory"
        );
    } else {
        for w in &layout.wx {
            let _ = writeln!(
                out,
                "W^X  {}-{} {} {} {:?}",
                w.start,
                w.end,
                w.perms,
                json_name(&w.reason),
                w.path
            );
        }
    }
    match &layout.heap {
        Some(h) => {
            let _ = writeln!(
                out,
                "heap {}-{} {}  program break {}  requested {}  top pad {}",
                h.start,
                h.end,
                human_size(h.size),
                h.program_break,
                human_size(h.requested),
                human_size(h.top_pad)
            );
        }
        None => {
            let _ = writeln!(out, "heap none (brk never grown)");
        }
    }
    out
}

/// The full text: header, one row per region and gap, totals.
pub fn render_text(layout: &Layout, color: bool) -> String {
    let headers = ["START", "END", "SIZE", "PERMS", "KIND", "OBJECT", "PATH"];
    let mut table = Columns::new(&headers, color);
    let plain = Style::Plain;
    let mut gaps = layout.gaps.iter().peekable();
    for region in &layout.regions {
        while let Some(gap) = gaps.next_if(|g| g.end == region.start) {
            let size = human_size(gap.size);
            table.cell(plain, format_args!("{}", gap.start));
            table.cell(plain, format_args!("{}", gap.end));
            table.cell(plain, format_args!("{size}"));
            table.cell(plain, format_args!(""));
            table.cell(plain, format_args!("-- gap {size} --"));
            table.end_row();
        }
        table.cell(plain, format_args!("{}", region.start));
        table.cell(plain, format_args!("{}", region.end));
        table.cell(plain, format_args!("{}", human_size(region.size)));
        table.cell(plain, format_args!("{}", region.perms));
        let kind = if color {
            kind_style(region.kind)
        } else {
            plain
        };
        table.cell(kind, format_args!("{}", region.kind.as_str()));
        let object = region
            .object
            .as_deref()
            .map(|o| o.rsplit('/').next().unwrap_or(o));
        match (object, region.segment) {
            (Some(o), Some(seg)) => table.cell(plain, format_args!("{}[{seg}]", escape(o))),
            (Some(o), None) => table.cell(plain, format_args!("{}", escape(o))),
            _ => table.cell(plain, format_args!("")),
        }
        match &region.note {
            Some(note) => table.cell(
                plain,
                format_args!("{}  ({})", escape(&region.path), escape(note)),
            ),
            None => table.cell(plain, format_args!("{}", escape(&region.path))),
        }
    }
    let mut out = header(layout);
    out.push('\n');
    table.render(&mut out);
    out.push_str("\n\n");
    let totals: Vec<String> = layout
        .totals
        .iter()
        .map(|(kind, bytes)| format!("{kind} {}", human_size(*bytes)))
        .collect();
    let _ = writeln!(
        out,
        "total {} in {} regions: {}",
        human_size(layout.mapped_bytes),
        layout.regions.len(),
        totals.join(", ")
    );
    for note in &layout.notes {
        let _ = writeln!(out, "note: {}", escape(note));
    }
    if !layout.events.is_empty() {
        let _ = writeln!(out, "\nrecent events (oldest first):");
        for e in &layout.events {
            let _ = writeln!(out, "  {}", escape(&e.line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_in_comm_and_paths_reach_the_terminal_escaped() {
        let layout: Layout = serde_json::from_value(serde_json::json!({
            "pid": 42,
            "comm": "\x1b[2Jx",
            "exe": "/tmp/\x1b]0;t\x07",
            "uid": 1000,
            "elf": null,
            "aslr": {"status": "full", "reasons": []},
            "wx": [],
            "heap": null,
            "regions": [{
                "start": "0x1000", "end": "0x2000", "size": 4096, "perms": "r--p",
                "offset": 0, "path": "/tmp/\x1b[31mred", "kind": "file",
                "object": null, "segment": null, "sections": []
            }],
            "gaps": [],
            "totals": {},
            "mapped_bytes": 4096,
        }))
        .expect("a valid layout");
        for color in [false, true] {
            let text = render_text(&layout, color);
            assert!(
                text.contains("pid 42 (\\x1b[2Jx)  exe /tmp/\\x1b]0;t\\x07"),
                "{text}"
            );
            assert!(text.contains("/tmp/\\x1b[31mred"), "{text}");
            if !color {
                assert!(!text.contains('\x1b'), "{text:?}");
            }
        }
    }

    #[test]
    fn notes_show_beside_their_region_and_below_the_table() {
        let layout: Layout = serde_json::from_value(serde_json::json!({
            "pid": 7, "comm": "x", "exe": null, "uid": 0, "elf": null,
            "aslr": {"status": "full", "reasons": []}, "wx": [], "heap": null,
            "regions": [{
                "start": "0x1000", "end": "0x2000", "size": 4096, "perms": "r-xp",
                "offset": 0, "path": "/mnt/fuse/lib.so", "kind": "file",
                "object": null, "segment": null, "sections": [],
                "note": "unreadable (timed out)"
            }],
            "gaps": [], "totals": {}, "mapped_bytes": 4096,
            "notes": ["thread stack pointers: timed out"],
        }))
        .expect("a valid layout");
        let text = render_text(&layout, false);
        assert!(
            text.contains("/mnt/fuse/lib.so  (unreadable (timed out))"),
            "{text}"
        );
        assert!(
            text.contains("\nnote: thread stack pointers: timed out\n"),
            "{text}"
        );
    }

    #[test]
    fn enum_names_are_the_jsons() {
        use crate::rules::{AslrStatus, WxReason};
        assert_eq!(json_name(&AslrStatus::Partial), "partial");
        assert_eq!(
            json_name(&WxReason::ExecutableAnonymous),
            "executable-anonymous"
        );
    }
}
