//! Thin entry point: parse the command line, load the config, run.

use std::process::ExitCode;

use clap::Parser;
use tollgate::cli::Cli;

/// jemalloc instead of glibc's malloc (measured in BENCHMARKS.md, "Profile", second
/// round): less CPU per proxied request, and less memory for idle keep-alive connections,
/// because hyper's per-connection buffers sit in slabs whose untouched pages stay
/// unmapped. It also returns freed memory to the system after a burst (a
/// login flood's password hashes). Its options are set at build time in
/// `.cargo/config.toml`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(tollgate::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
