//! Plain aligned columns for tables of any length. comfy-table allocates
//! several strings per cell and measures each twice; at 20,000 rows that
//! cost more than `pmap` takes in all. Cells here are written once into
//! one buffer, measured once, then padded. The text is what comfy-table's
//! `NOTHING` preset printed (every cell padded by one space on each side,
//! left aligned, no borders), which ps and rss used before.

use std::fmt::{self, Write as _};

use unicode_width::UnicodeWidthStr as _;

/// How a cell is drawn on a terminal (ignored without color).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    /// An ANSI foreground color number (30-37), e.g. 32 for green.
    Fg(u8),
}

/// Where a cell's text is in the buffer, its width and style.
struct Cell {
    end: usize,
    width: usize,
    style: Style,
}

pub struct Columns {
    color: bool,
    widths: Vec<usize>,
    /// Every cell's text, one after another.
    text: String,
    cells: Vec<Cell>,
}

impl Columns {
    /// A table with `headers` (bold when `color`).
    pub fn new(headers: &[&str], color: bool) -> Self {
        let mut table = Self {
            color,
            widths: vec![0; headers.len()],
            text: String::new(),
            cells: Vec::new(),
        };
        for header in headers {
            table.cell(Style::Bold, format_args!("{header}"));
        }
        table
    }

    /// Appends a cell to the current row; rows wrap after the last column.
    pub fn cell(&mut self, style: Style, args: fmt::Arguments) {
        let start = self.text.len();
        let _ = self.text.write_fmt(args);
        let width = self.text[start..].width();
        let column = self.cells.len() % self.widths.len();
        self.widths[column] = self.widths[column].max(width);
        self.cells.push(Cell {
            end: self.text.len(),
            width,
            style,
        });
    }

    /// Fills the current row with empty cells.
    pub fn end_row(&mut self) {
        while !self.cells.len().is_multiple_of(self.widths.len()) {
            self.cell(Style::Plain, format_args!(""));
        }
    }

    /// The rows as lines, appended to `out`.
    pub fn render(mut self, out: &mut String) {
        self.end_row();
        out.reserve(self.cells.len() / self.widths.len() * (self.total_width() + 1));
        let mut start = 0;
        for (i, cell) in self.cells.iter().enumerate() {
            let column = i % self.widths.len();
            if column == 0 && i > 0 {
                out.push('\n');
            }
            let styled = self.color && cell.style != Style::Plain;
            if styled {
                let _ = match cell.style {
                    Style::Bold => write!(out, "\x1b[1m"),
                    Style::Fg(n) => write!(out, "\x1b[{n}m"),
                    Style::Plain => Ok(()),
                };
            }
            out.push(' ');
            out.push_str(&self.text[start..cell.end]);
            let pad = self.widths[column] - cell.width + 1;
            out.extend(std::iter::repeat_n(' ', pad));
            if styled {
                out.push_str("\x1b[0m");
            }
            start = cell.end;
        }
    }

    fn total_width(&self) -> usize {
        self.widths.iter().map(|w| w + 2).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ours(rows: &[Vec<&str>]) -> String {
        let mut table = Columns::new(&rows[0], false);
        for row in &rows[1..] {
            for cell in row {
                table.cell(Style::Plain, format_args!("{cell}"));
            }
            table.end_row();
        }
        let mut out = String::new();
        table.render(&mut out);
        out
    }

    #[test]
    fn columns_are_padded_by_display_width() {
        let rows = vec![
            vec!["START", "END", "SIZE", "KIND", "PATH"],
            vec!["0x1000", "0x2000", "4 KiB", "text", "/usr/bin/x"],
            vec!["0x2000", "0x7f0000000000", "127 TiB", "-- gap --"],
            vec![
                "0x7f0000000000",
                "0x7f0000001000",
                "4 KiB",
                "file",
                "/tmp/日本語.so",
            ],
            vec!["a", "", "", "", ""],
        ];
        // What comfy-table's NOTHING preset printed for these rows, before
        // it was dropped: every cell padded by one space each side, wide
        // characters measured by their display width.
        let expected = " START           END             SIZE     KIND       PATH           \n \
                        0x1000          0x2000          4 KiB    text       /usr/bin/x     \n \
                        0x2000          0x7f0000000000  127 TiB  -- gap --                 \n \
                        0x7f0000000000  0x7f0000001000  4 KiB    file       /tmp/日本語.so \n \
                        a                                                                  ";
        assert_eq!(ours(&rows), expected);
    }

    #[test]
    fn color_wraps_cells_and_adds_no_width() {
        let mut table = Columns::new(&["A", "B"], true);
        table.cell(Style::Fg(32), format_args!("text"));
        table.cell(Style::Plain, format_args!("x"));
        let mut out = String::new();
        table.render(&mut out);
        assert_eq!(
            out,
            "\x1b[1m A    \x1b[0m\x1b[1m B \x1b[0m\n\x1b[32m text \x1b[0m x "
        );
    }
}
