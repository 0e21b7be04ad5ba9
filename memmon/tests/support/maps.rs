//! /proc/PID/maps of a (stopped) process, line by line.

use std::fs;

/// The whole /proc/PID/maps text.
pub fn maps_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/maps: {e}"))
}

/// The maps line whose range holds `addr`, if any.
pub fn maps_line_containing(pid: u32, addr: u64) -> Option<String> {
    maps_of(pid)
        .lines()
        .find(|l| maps_range(l).is_some_and(|(lo, hi)| lo <= addr && addr < hi))
        .map(str::to_owned)
}

/// The `start-end` range of a maps line.
pub fn maps_range(line: &str) -> Option<(u64, u64)> {
    let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        u64::from_str_radix(lo, 16).ok()?,
        u64::from_str_radix(hi, 16).ok()?,
    ))
}

/// The maps line starting exactly at `start`, if any.
pub fn maps_line_at(pid: u32, start: u64) -> Option<String> {
    let prefix = format!("{start:x}-");
    maps_of(pid)
        .lines()
        .find(|l| l.starts_with(&prefix))
        .map(str::to_owned)
}
