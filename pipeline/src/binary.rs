//! What every binary of the workspace (`pipeline`, `trainer`, `serve`) does at its edges.

use std::io::IsTerminal;
use std::process::ExitCode;

/// Log to stderr with `tracing`: the `RUST_LOG` filter, else `default_filter` (e.g. `"info"`);
/// colours only when stderr is a terminal, so log files stay plain text.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
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
