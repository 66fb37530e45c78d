use std::process::ExitCode;

use clap::Parser;

use alignscope::cli::{run, Cli};

/// glibc returns freed blocks above 128 KiB to the OS at once, so every training step's tensors
/// are mapped and faulted in anew (half the CPU time went to the kernel). Keep blocks up to
/// 32 MiB in the heap and the freed memory around for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

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
    tune_allocator();
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
