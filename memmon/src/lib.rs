//! memmon: a live model of every process's address space, fed by eBPF.
//!
//! The library holds everything the CLI, the daemon, the query server and
//! the tests share. The command-line interface itself lives with the binary
//! (src/bin/memmon/), behind the default `cli` feature, so library users do
//! not pull in its dependencies.

pub mod bpf;
pub mod classify;
pub mod client;
pub mod config;
pub mod connections;
pub mod daemon;
pub mod elf;
pub mod escape;
pub mod events;
pub mod fdpass;
pub mod io_pool;
pub mod metrics;
pub mod model;
pub mod origin;
pub mod procmaps;
pub mod protocol;
pub mod report;
pub mod rules;
pub mod seed;
pub mod server;
pub mod symbols;

#[cfg(test)]
mod testutil;
pub mod throttle;
pub mod tracker;
pub mod users;
