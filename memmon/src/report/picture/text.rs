//! The picture in a terminal: one line per text row, the band's high
//! address on its first row, its words, size and permissions beside it.
//! Colour (ANSI) only when asked for, i.e. when stdout is a terminal.

use std::fmt::Write as _;

use super::{Band, Picture, human_size, kind_words, palette::colour, scale::rows};

const BAR: usize = 8;
const ADDR: usize = 18;
const LABEL_MAX: usize = 48;

/// The whole picture: header, bands high to low, legend.
pub fn render_text(picture: &Picture, color: bool) -> String {
    let layout = picture.layout;
    let mut out = String::new();
    for line in picture.header() {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "high addresses at the top; bar height grows with log2(size)\n"
    );
    let labels: Vec<String> = picture.bands.iter().map(|b| picture.label(b)).collect();
    // Collapsed runs keep their whole label: its counts must add up.
    let width = labels
        .iter()
        .zip(&picture.bands)
        .filter(|(_, b)| !b.collapsed)
        .map(|(l, _)| l.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .min(LABEL_MAX);
    let entry = picture.entry_band();
    let heap = picture.heap_band();
    let _ = writeln!(out, "{:ADDR$} ┌{}┐", "", "─".repeat(BAR));
    let mut group: Option<&str> = None;
    for (n, (band, label)) in picture.bands.iter().zip(&labels).enumerate() {
        let object = picture.object_of(band);
        if object.is_some() && object != group {
            let heading = picture.object_heading(object.unwrap_or_default());
            let _ = writeln!(out, "{:ADDR$} │{:BAR$}│ ── {heading}", "", "");
        }
        group = object;
        if heap == Some(n)
            && let Some(text) = picture.break_label()
        {
            let brk = layout
                .heap
                .as_ref()
                .map_or("", |h| h.program_break.as_str());
            let _ = writeln!(out, "{brk:>ADDR$} ├{}┤ ◀ {text}", "─".repeat(BAR));
        }
        let fill = fill_of(picture, band, color);
        let indent = if object.is_some() { "  " } else { "" };
        let label = if band.collapsed {
            label.clone()
        } else {
            truncate(&format!("{indent}{label}"), width)
        };
        let perms = band
            .region()
            .map_or("", |i| layout.regions[i].perms.as_str());
        let mark = if entry == Some(n) { "  ◀ entry" } else { "" };
        let size = if band.collapsed {
            format!(
                "{} in {}",
                human_size(picture.mapped_in(band)),
                human_size(band.size())
            )
        } else {
            human_size(band.size())
        };
        let _ = writeln!(
            out,
            "{:>ADDR$} │{fill}│ {label:<width$} {size:>9} {perms}{mark}",
            super::super::hex(band.end)
        );
        for _ in 1..text_rows_for(band) {
            let _ = writeln!(out, "{:ADDR$} │{fill}│", "");
        }
    }
    let low = picture.bands.last().map_or(0, |b| b.start);
    let _ = writeln!(
        out,
        "{:>ADDR$} └{}┘",
        super::super::hex(low),
        "─".repeat(BAR)
    );
    out.push_str(&legend(picture, color));
    out
}

/// Whole rows for a band: at least one.
pub fn text_rows_for(band: &Band) -> usize {
    rows(band.size()).floor().max(1.0) as usize
}

fn fill_of(picture: &Picture, band: &Band, color: bool) -> String {
    match band.region() {
        Some(i) => paint(&"█".repeat(BAR), picture.layout.regions[i].kind, color),
        None if band.collapsed => "≡".repeat(BAR),
        None if band.gaps.is_empty() => "·".repeat(BAR),
        None => " ".repeat(BAR),
    }
}

fn paint(text: &str, kind: crate::classify::RegionKind, color: bool) -> String {
    if color {
        format!("\x1b[{}m{text}\x1b[0m", colour(kind).ansi)
    } else {
        text.to_owned()
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

fn legend(picture: &Picture, color: bool) -> String {
    let mut parts: Vec<String> = picture
        .legend()
        .into_iter()
        .map(|k| format!("{} {}", paint("██", k, color), kind_words(k)))
        .collect();
    parts.push("(blank) gap".into());
    if picture.bands.iter().any(|b| b.collapsed) {
        parts.push("≡≡ collapsed run of small regions".into());
    }
    format!("legend: {}\n", parts.join("  "))
}
