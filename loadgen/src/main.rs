//! `sluice-loadgen`: see `sluice-loadgen --help` and the library's `cli` module.

fn main() -> std::process::ExitCode {
    sluice_loadgen::cli::main_with_args(std::env::args_os())
}
