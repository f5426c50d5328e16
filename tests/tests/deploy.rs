//! The deployment files pass the linters others wrote: hadolint on `deploy/Dockerfile`,
//! kubernetes-validate (strict, the Kubernetes API's own schemas) on `deploy/kubernetes/`; and
//! they agree with the server: the readiness probe asks the health service for the service name
//! the server reports, on the port the container serves gRPC on.

use std::path::{Path, PathBuf};
use std::process::Command;

use pianoroll_tests::{python, repo_root};

/// A tool installed beside the project's Python (scripts/env.sh puts it in the same venv).
fn tool(python: &Path, name: &str) -> PathBuf {
    python.parent().expect("the venv's bin folder").join(name)
}

fn run(program: &Path, args: &[PathBuf]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{}:\n{text}", program.display());
    text
}

#[test]
fn dockerfile_and_manifests_pass_their_linters() {
    let Some(python) = python() else { return };
    run(
        &tool(&python, "hadolint"),
        &[PathBuf::from("deploy/Dockerfile")],
    );
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    manifests.sort();
    assert_eq!(manifests.len(), 4, "{manifests:?}");
    let mut args = vec![PathBuf::from("--strict")];
    args.extend(manifests);
    let report = run(&tool(&python, "kubernetes-validate"), &args);
    assert_eq!(report.matches("passed").count(), 4, "{report}");

    let deployment =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/deployment.yaml")).unwrap();
    assert!(
        deployment.contains(&format!("service: {}", serve::server::SERVICE_NAME)),
        "the readiness probe names the server's health service"
    );
    assert!(deployment.contains("containerPort: 50051"));
    assert!(deployment.contains("\"0.0.0.0:50051\""));
}
