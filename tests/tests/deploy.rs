//! The deployment files pass the linters others wrote: hadolint on `deploy/Dockerfile`,
//! kubernetes-validate (strict, the Kubernetes API's own schemas) on `deploy/kubernetes/` and on
//! the containers of the KServe example (`deploy/kserve/`, whose custom resources have no schema
//! offline); and they agree with the server: the readiness probes ask the health service for
//! service names the server reports, on the port the container serves gRPC on.

use std::path::{Path, PathBuf};
use std::process::Command;

use pianoroll_tests::{python, repo_root};
use serde_json::json;

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

const KSERVE_FACTS: &str = r#"
import json, sys, yaml
runtime = yaml.safe_load(open(sys.argv[1]))
service = yaml.safe_load(open(sys.argv[2]))
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pianoroll-runtime"},
       "spec": {"containers": runtime["spec"]["containers"]}}
yaml.safe_dump(pod, open(sys.argv[3], "w"))
container = runtime["spec"]["containers"][0]
model = service["spec"]["predictor"]["model"]
print(json.dumps({
    "runtime": [runtime["apiVersion"], runtime["kind"], runtime["metadata"]["name"]],
    "service": [service["apiVersion"], service["kind"]],
    "protocols": runtime["spec"]["protocolVersions"],
    "formats": [f["name"] for f in runtime["spec"]["supportedModelFormats"]],
    "ports": [[p["name"], p["containerPort"]] for p in container["ports"]],
    "args": container["args"],
    "probe_service": container["readinessProbe"]["grpc"]["service"],
    "model": [model["runtime"], model["modelFormat"]["name"], model["protocolVersion"]],
}))
"#;

/// The KServe example: its container passes strict validation as a Pod's, it serves the v2
/// protocol on the port KServe routes gRPC to, and the InferenceService names the runtime.
#[test]
fn the_kserve_example_fits_kserve_and_the_server() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("pod.yaml");
    let kserve = repo_root().join("deploy/kserve");
    let facts = pianoroll_tests::python_json(
        &python,
        KSERVE_FACTS,
        &[
            kserve.join("serving-runtime.yaml").as_os_str(),
            kserve.join("inference-service.yaml").as_os_str(),
            pod.as_os_str(),
        ],
    );
    let report = run(
        &tool(&python, "kubernetes-validate"),
        &[PathBuf::from("--strict"), pod],
    );
    assert_eq!(report.matches("passed").count(), 1, "{report}");
    assert_eq!(
        facts["runtime"],
        json!(["serving.kserve.io/v1alpha1", "ServingRuntime", "pianoroll"])
    );
    assert_eq!(
        facts["service"],
        json!(["serving.kserve.io/v1beta1", "InferenceService"])
    );
    assert_eq!(facts["protocols"], json!(["grpc-v2"]));
    assert_eq!(facts["ports"], json!([["h2c", 8081]]));
    let args = facts["args"].as_array().unwrap();
    let after = |flag: &str| {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1].as_str().unwrap().to_owned()
    };
    assert_eq!(after("--addr"), "0.0.0.0:8081");
    assert_eq!(
        after("--models"),
        "/mnt/models",
        "where KServe puts the model"
    );
    assert_eq!(facts["probe_service"], serve::v2::grpc::SERVICE_NAME);
    assert_eq!(facts["model"], json!(["pianoroll", "pianoroll", "grpc-v2"]));
    assert_eq!(facts["formats"], json!(["pianoroll"]));
}
