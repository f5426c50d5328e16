//! What every binary of the workspace (`pipeline`, `trainer`, `serve`) does at its edges.

use std::io::IsTerminal;
use std::process::ExitCode;

/// Log to stderr with `tracing`: the `RUST_LOG` filter, else `default_filter` (e.g. `"info"`);
/// colours only when stderr is a terminal, so log files stay plain text.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter);
    if std::env::var(LOG_FORMAT_VARIABLE).is_ok_and(|format| format == "json") {
        // One JSON object a line, for log collectors.
        builder.json().with_current_span(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// `PIANOROLL_LOG_FORMAT=json` makes every binary log one JSON object a line (time, level,
/// message and fields) instead of text.
pub const LOG_FORMAT_VARIABLE: &str = "PIANOROLL_LOG_FORMAT";

/// End the process the way the platform's command-line tools end when the reader of their
/// output goes away (`pipeline stats DATA | head -2`): killed quietly by SIGPIPE, which the shell
/// reports as status 141. Rust ignores SIGPIPE by default, so every `println!` after the reader
/// has gone would otherwise panic with "failed printing to stdout: Broken pipe". Call it first
/// thing in `main` of a command-line tool; writes to sockets are unaffected (the standard
/// library sends with `MSG_NOSIGNAL`).
pub fn end_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: sets the process-wide disposition of one signal to a valid value; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Success, or the error with its causes on one line (`error: what: why`) and exit status 1.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
