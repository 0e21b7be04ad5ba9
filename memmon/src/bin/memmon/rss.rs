//! `query --rss`: pmap -X's columns for each region, and their totals by
//! kind, as a table after the layout's (the layout's own table is left as
//! it is).

use memmon::{
    escape::escape,
    report::{Layout, Rss},
};

use crate::render::human_size;
use crate::table::{Columns, Style};

const COLUMNS: [&str; 6] = ["RSS", "PSS", "SWAP", "PRIV DIRTY", "SHR DIRTY", "LOCKED"];

fn cells(rss: &Rss) -> [String; 6] {
    [
        rss.rss,
        rss.pss,
        rss.swap,
        rss.private_dirty,
        rss.shared_dirty,
        rss.locked,
    ]
    .map(human_size)
}

/// The smaps table: one row per region (`?` where the process changed
/// between the model and the read), then one per kind and the total.
pub fn render_rss(layout: &Layout) -> String {
    let mut header = vec!["START", "SIZE", "KIND"];
    header.extend(COLUMNS);
    header.push("PATH");
    let mut table = Columns::new(&header, false);
    for region in &layout.regions {
        let mut row = vec![
            region.start.clone(),
            human_size(region.size),
            region.kind.as_str().to_owned(),
        ];
        match &region.rss {
            Some(rss) => row.extend(cells(rss)),
            None => row.extend(COLUMNS.map(|_| "?".to_owned())),
        }
        row.push(escape(&region.path).into_owned());
        add_row(&mut table, &row);
    }
    let mut out = format!("\nresident memory (/proc/{}/smaps):\n", layout.pid);
    table.render(&mut out);
    out.push_str("\n\n");
    let mut header = vec!["KIND"];
    header.extend(COLUMNS);
    let mut totals = Columns::new(&header, false);
    let mut all = Rss::default();
    for (kind, rss) in layout.rss_totals.iter().flatten() {
        all.add(rss);
        let mut row = vec![kind.as_str().to_owned()];
        row.extend(cells(rss));
        add_row(&mut totals, &row);
    }
    let mut row = vec!["total".to_owned()];
    row.extend(cells(&all));
    add_row(&mut totals, &row);
    totals.render(&mut out);
    out.push('\n');
    out
}

fn add_row(table: &mut Columns, row: &[String]) {
    for cell in row {
        table.cell(Style::Plain, format_args!("{cell}"));
    }
    table.end_row();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_kinds_and_unknowns_are_shown() {
        let layout: Layout = serde_json::from_value(serde_json::json!({
            "pid": 7, "comm": "x", "exe": null, "uid": 0, "elf": null,
            "aslr": {"status": "full", "reasons": []}, "wx": [], "heap": null,
            "regions": [
                {"start": "0x1000", "end": "0x3000", "size": 8192, "perms": "rw-p",
                 "offset": 0, "path": "", "kind": "anon", "object": null,
                 "segment": null, "sections": [],
                 "rss": {"rss": 8192, "pss": 8192, "swap": 0, "private_dirty": 4096,
                         "shared_dirty": 0, "locked": 0}},
                {"start": "0x5000", "end": "0x6000", "size": 4096, "perms": "r--p",
                 "offset": 0, "path": "/lib/x.so", "kind": "file", "object": null,
                 "segment": null, "sections": []}
            ],
            "gaps": [], "totals": {}, "mapped_bytes": 12288,
            "rss_totals": {"anon": {"rss": 8192, "pss": 8192, "swap": 0,
                "private_dirty": 4096, "shared_dirty": 0, "locked": 0}},
        }))
        .expect("a valid layout");
        let text = render_rss(&layout);
        let line = |start: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no {start} line in {text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line("0x1000"),
            "0x1000 8 KiB anon 8 KiB 8 KiB 0 B 4 KiB 0 B 0 B"
        );
        assert_eq!(line("0x5000"), "0x5000 4 KiB file ? ? ? ? ? ? /lib/x.so");
        assert_eq!(line("total"), "total 8 KiB 8 KiB 0 B 4 KiB 0 B 0 B");
    }
}
