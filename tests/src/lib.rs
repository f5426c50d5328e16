//! End-to-end tests across the workspace's crates live in `tests/tests/`; this library holds
//! what they share.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_owned()
}

/// The bundled Nottingham set.
pub fn nottingham() -> PathBuf {
    repo_root().join("data/nottingham")
}

/// The Python interpreter of the project's environment (`scripts/env.sh` sets
/// `PIANOROLL_PYTHON`), or `None` with a message saying why tests that need it are skipped.
/// With `PIANOROLL_REQUIRE_PYTHON=1` (as `scripts/test.sh` sets) a missing one is a failure.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("PIANOROLL_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None if std::env::var_os("PIANOROLL_REQUIRE_PYTHON").is_some() => {
            panic!("PIANOROLL_REQUIRE_PYTHON is set but PIANOROLL_PYTHON is not")
        }
        None => {
            eprintln!("skipped: PIANOROLL_PYTHON is not set (run through scripts/test.sh)");
            None
        }
    }
}
