use std::process::ExitCode;

use clap::Parser;

use alignscope::cli::{run, Cli};

/// Tensor code allocates a fresh buffer per operation. glibc hands large blocks straight back to
/// the OS, so a training step faulted its buffers in anew and the kernel zeroed pages for as long
/// as the matrix products ran. mimalloc with purging off keeps freed memory for reuse (SmolLM2
/// fine-tuning about 1.25× faster, docs/benchmarks.md); the process keeps its peak memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc.h (the bindings leave it unnamed); −1: never purge.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one allocator option, before any other thread runs.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

/// Output piped into a reader that stops early (`| head`) ends the program quietly, as it does
/// for other command-line tools, instead of a panic in `println!`.
#[cfg(unix)]
fn quiet_broken_pipe() {
    // SAFETY: restores the default action of one signal before any other thread runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_broken_pipe() {}

fn main() -> ExitCode {
    keep_freed_memory();
    quiet_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        None => alignscope::ui::run_app(),
        Some(command) => run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
