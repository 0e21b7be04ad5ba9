//! The picture as a standalone SVG: the same bands as the terminal's, to
//! scale on the same log axis, with a `<title>` tooltip per region (range,
//! size, perms, path, origin) and per gap.

use std::fmt::Write as _;

use super::{
    Band, Picture, human_size, kind_words,
    palette::{GAP_RGB, RUN_RGB, colour},
    scale::rows,
};
use crate::report::hex;

pub const WIDTH: u32 = 960;
const ROW: f64 = 12.0;
const TOP: f64 = 70.0;
const ADDR_X: f64 = 150.0;
const BAR_X: f64 = 160.0;
const BAR_W: f64 = 140.0;
const LABEL_X: f64 = 312.0;
const LEGEND_ROW: f64 = 18.0;
const LEGEND_PER_ROW: usize = 5;

/// A complete SVG document, `WIDTH` wide and as tall as the bands need.
pub fn render_svg(picture: &Picture) -> String {
    let heights: Vec<f64> = picture
        .bands
        .iter()
        .map(|b| (rows(b.size()) * ROW * 10.0).round() / 10.0)
        .collect();
    let bands_h: f64 = heights.iter().sum();
    let legend = picture.legend();
    let legend_rows = (legend.len() + 2).div_ceil(LEGEND_PER_ROW);
    let height = (TOP + bands_h + 30.0 + legend_rows as f64 * LEGEND_ROW + 10.0).ceil() as u32;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans Mono, monospace" font-size="11">"#
    );
    let header = picture.header();
    let _ = writeln!(
        out,
        "<title>memmon map: {}</title>",
        xml(header.first().map_or("", String::as_str))
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    for (n, line) in header.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}" font-size="{}">{}</text>"#,
            18 + 16 * n,
            if n == 0 { 13 } else { 11 },
            xml(line)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="10" y="{}" fill="#666666">high addresses at the top; band height grows with log2(size)</text>"##,
        18 + 16 * header.len()
    );

    let entry = picture.entry_band();
    let heap = picture.heap_band();
    let mut y = TOP;
    for (n, (band, h)) in picture.bands.iter().zip(&heights).enumerate() {
        let _ = writeln!(
            out,
            r#"<text x="{ADDR_X}" y="{:.1}" text-anchor="end">{}</text>"#,
            y + 10.0,
            hex(band.end)
        );
        band_svg(&mut out, picture, band, y, *h, entry == Some(n));
        if heap == Some(n)
            && let Some(text) = picture.break_label()
        {
            let _ = writeln!(
                out,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#d62728" stroke-width="2" stroke-dasharray="6 3"/><text x="{LABEL_X}" y="{:.1}" fill="#d62728">◀ {}</text>"##,
                ADDR_X - 130.0,
                WIDTH - 10,
                y - 3.0,
                xml(&text)
            );
        }
        y += h;
    }
    let low = picture.bands.last().map_or(0, |b| b.start);
    let _ = writeln!(
        out,
        r#"<text x="{ADDR_X}" y="{:.1}" text-anchor="end">{}</text>"#,
        y + 10.0,
        hex(low)
    );

    let mut items: Vec<(String, String)> = legend
        .iter()
        .map(|k| (colour(*k).rgb.to_owned(), kind_words(*k).to_owned()))
        .collect();
    items.push((GAP_RGB.into(), "gap (unmapped)".into()));
    items.push((RUN_RGB.into(), "collapsed run".into()));
    let legend_y = y + 30.0;
    for (n, (rgb, words)) in items.iter().enumerate() {
        let x = 10.0 + (n % LEGEND_PER_ROW) as f64 * 185.0;
        let ly = legend_y + (n / LEGEND_PER_ROW) as f64 * LEGEND_ROW;
        let _ = writeln!(
            out,
            r##"<rect x="{x:.1}" y="{:.1}" width="14" height="12" fill="{rgb}" stroke="#333333" stroke-width="0.5"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            ly - 10.0,
            x + 20.0,
            ly,
            xml(words)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn band_svg(out: &mut String, picture: &Picture, band: &Band, y: f64, h: f64, entry: bool) {
    let layout = picture.layout;
    let text_y = y + 10.0;
    let words = match picture.object_of(band) {
        Some(object) => format!(
            "{} · {}",
            picture.object_heading(object),
            picture.label(band)
        ),
        None => picture.label(band),
    };
    if let Some(i) = band.region() {
        let r = &layout.regions[i];
        let _ = writeln!(
            out,
            r##"<g><title>{}</title><rect x="{BAR_X}" y="{y:.1}" width="{BAR_W}" height="{h:.1}" fill="{}" stroke="#ffffff" stroke-width="0.5"/><text x="{LABEL_X}" y="{text_y:.1}">{}  {}  {}{}</text></g>"##,
            xml(&picture.region_tooltip(i)),
            colour(r.kind).rgb,
            xml(&words),
            human_size(band.size()),
            xml(&r.perms),
            if entry { "  ◀ entry" } else { "" }
        );
    } else if band.collapsed {
        let _ = writeln!(
            out,
            r##"<g><title>{}</title><rect x="{BAR_X}" y="{y:.1}" width="{BAR_W}" height="{h:.1}" fill="{RUN_RGB}"/><text x="{LABEL_X}" y="{text_y:.1}">{}  {} mapped in {}</text>"##,
            xml(&words),
            xml(&words),
            human_size(picture.mapped_in(band)),
            human_size(band.size())
        );
        // One stripe per region, so each keeps its own tooltip.
        let n = band.regions.len() as f64;
        let stripe = BAR_W / n;
        for (k, i) in band.regions.clone().enumerate() {
            let _ = writeln!(
                out,
                r#"<rect x="{:.3}" y="{:.1}" width="{stripe:.3}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                BAR_X + k as f64 * stripe,
                y + 1.0,
                (h - 2.0).max(1.0),
                colour(layout.regions[i].kind).rgb,
                xml(&picture.region_tooltip(i))
            );
        }
        out.push_str("</g>\n");
    } else {
        let _ = writeln!(
            out,
            r##"<g><title>{}</title><rect x="{BAR_X}" y="{y:.1}" width="{BAR_W}" height="{h:.1}" fill="{GAP_RGB}" stroke="#dddddd" stroke-width="0.5"/><text x="{LABEL_X}" y="{text_y:.1}" fill="#888888">{}  {}</text></g>"##,
            xml(&picture.gap_tooltip(band)),
            xml(&picture.label(band)),
            human_size(band.size())
        );
    }
}

/// Text made safe inside XML elements and attributes (control characters
/// were already escaped by `escape`; XML 1.0 forbids most of them).
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
