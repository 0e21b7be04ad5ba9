//! A strict parser for /proc/PID/maps.
//!
//! Each line is `start-end perms offset major:minor inode`, then, when the
//! VMA has a name, spaces padding to a fixed column and the pathname field
//! exactly as the kernel printed it (it may contain spaces).

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{Backing, Perms, Region};

#[cfg(test)]
mod tests;

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The pathname field verbatim; empty for unnamed anonymous memory.
    pub path: String,
}

/// What was wrong with a maps line.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LineError {
    #[error("missing {0} field")]
    Missing(&'static str),
    #[error("bad {field} field {text:?}")]
    Bad { field: &'static str, text: String },
    #[error("empty range {start:#x}-{end:#x}")]
    EmptyRange { start: u64, end: u64 },
    #[error("empty line")]
    EmptyLine,
}

/// A malformed maps file: the 1-based line number and the problem.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("/proc maps line {line}: {error}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub error: LineError,
    /// The offending line (truncated if huge).
    pub text: String,
}

/// Parses a whole maps file. A final newline is optional; blank lines
/// elsewhere are errors.
pub fn parse_maps(text: &str) -> Result<Vec<MapsEntry>, ParseError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            parse_line(line).map_err(|error| ParseError {
                line: i + 1,
                error,
                text: line.chars().take(200).collect(),
            })
        })
        .collect()
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Result<MapsEntry, LineError> {
    if line.is_empty() {
        return Err(LineError::EmptyLine);
    }
    let mut rest = line;
    let range = field(&mut rest, "address range")?;
    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| bad("address range", range))?;
    let (start, end) = (hex(start, "start address")?, hex(end, "end address")?);
    if start >= end {
        return Err(LineError::EmptyRange { start, end });
    }
    let perms_text = field(&mut rest, "permissions")?;
    let perms = Perms::parse(perms_text).ok_or_else(|| bad("permissions", perms_text))?;
    let offset = hex(field(&mut rest, "offset")?, "offset")?;
    let dev = field(&mut rest, "device")?;
    let (major, minor) = dev.split_once(':').ok_or_else(|| bad("device", dev))?;
    let dev_major = u32::try_from(hex(major, "device")?).map_err(|_| bad("device", dev))?;
    let dev_minor = u32::try_from(hex(minor, "device")?).map_err(|_| bad("device", dev))?;
    let inode_text = field(&mut rest, "inode")?;
    if !inode_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("inode", inode_text));
    }
    let inode = inode_text.parse().map_err(|_| bad("inode", inode_text))?;
    Ok(MapsEntry {
        start,
        end,
        perms,
        offset,
        dev_major,
        dev_minor,
        inode,
        // Everything after the padding, trailing spaces included.
        path: rest.trim_start_matches(' ').to_owned(),
    })
}

/// Takes the next header field: non-empty, ended by exactly one space (or
/// the end of the line).
fn field<'a>(rest: &mut &'a str, name: &'static str) -> Result<&'a str, LineError> {
    let (value, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    if value.is_empty() {
        return Err(LineError::Missing(name));
    }
    *rest = tail;
    Ok(value)
}

fn hex(text: &str, field: &'static str) -> Result<u64, LineError> {
    // from_str_radix alone would accept a leading '+'.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(field, text));
    }
    u64::from_str_radix(text, 16).map_err(|_| bad(field, text))
}

fn bad(field: &'static str, text: &str) -> LineError {
    LineError::Bad {
        field,
        text: text.chars().take(80).collect(),
    }
}

/// Formats like the kernel (show_vma_header_prefix + seq_pad), so a parsed
/// line prints back identically.
impl fmt::Display for MapsEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = format!(
            "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ",
            self.start,
            self.end,
            self.perms,
            self.offset,
            self.dev_major,
            self.dev_minor,
            self.inode
        );
        if self.path.is_empty() {
            return f.write_str(&header);
        }
        // The kernel pads to 25 + 6 * sizeof(void *) - 1 columns, then adds
        // one more space.
        write!(f, "{header:<72} {}", self.path)
    }
}

impl MapsEntry {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The backing this entry implies. `[heap]`/`[stack]` are anonymous:
    /// the model derives those names from brk and start_stack.
    pub fn backing(&self) -> Backing {
        let path = self.path.as_str();
        if path.is_empty() || path == "[heap]" || path == "[stack]" {
            Backing::anonymous()
        } else if let Some(name) = path
            .strip_prefix("[anon:")
            .and_then(|p| p.strip_suffix(']'))
        {
            Backing::Anonymous {
                name: Some(name.to_owned()),
            }
        } else if path.starts_with('[') {
            Backing::Special {
                name: path.to_owned(),
            }
        } else {
            Backing::File {
                path: path.to_owned(),
                dev_major: self.dev_major,
                dev_minor: self.dev_minor,
                inode: self.inode,
            }
        }
    }

    pub fn to_region(&self) -> Region {
        let backing = self.backing();
        Region {
            start: self.start,
            end: self.end,
            perms: self.perms,
            offset: if matches!(backing, Backing::Anonymous { .. }) {
                0
            } else {
                self.offset
            },
            backing,
            map_stack: false,
            // The main stack is the one VM_GROWSDOWN mapping /proc names.
            grows_down: self.path == "[stack]",
        }
    }
}

impl From<&MapsEntry> for Region {
    fn from(entry: &MapsEntry) -> Region {
        entry.to_region()
    }
}
