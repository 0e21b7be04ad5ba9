//! memmon: a live model of every process's address space, fed by eBPF.
//!
//! The library holds everything the CLI, the daemon, the query server and
//! the tests share; the binary is a thin shell around it.

pub mod bpf;
pub mod classify;
pub mod cli;
pub mod elf;
pub mod events;
pub mod model;
pub mod procmaps;
pub mod rules;
pub mod seed;

#[cfg(test)]
mod testutil;
pub mod tracker;
