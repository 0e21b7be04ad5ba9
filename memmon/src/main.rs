//! The `memmon` binary: a thin shell over the library's CLI.

fn main() -> std::process::ExitCode {
    memmon::cli::main()
}
