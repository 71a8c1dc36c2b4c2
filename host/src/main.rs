//! The `actionhost` command.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than glibc's malloc. Under glibc, memory freed after
/// start-up (component bytes, compilation) stayed in per-thread arenas: a
/// warm start with the bundled plugins held 85 MB of anonymous memory it no
/// longer used, and a long run kept growing from fragmentation. jemalloc
/// returns freed pages to the system in the background.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it initialises (before `main`): background
/// purging threads, and freed pages handed back after about a second rather
/// than ten, so idle memory falls soon after a burst.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

fn main() -> ExitCode {
    // `RUST_BACKTRACE=1` (common in operators' environments) also makes every
    // `std::backtrace::Backtrace::capture` walk the stack, and wasmtime builds
    // an error value while tearing down each store: with it set, every
    // execution paid for a stack walk (6% of a create's CPU in a profile).
    // Panics still print their backtrace; only error values stop capturing
    // one, unless the operator asks with `RUST_LIB_BACKTRACE=1`.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread exists yet (the runtime starts below), so
        // nothing can read the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0")
        };
    }
    let cli = actionhost::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(cli.run())
}
