//! The deployment files pass the linters others wrote: hadolint on `deploy/Dockerfile`,
//! kubernetes-validate (strict, the Kubernetes API's own schemas) on `deploy/kubernetes/` and on
//! the containers of the KServe example (`deploy/kserve/`, whose custom resources have no schema
//! offline); and they agree with the server: the readiness probes ask the health service for
//! service names the server reports, on the port the container serves gRPC on, and the image's
//! HEALTHCHECK runs a command the image has, which passes against a real server and fails
//! without one.

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

/// The `serve` binary of this build, beside this test's own folder (`cargo test --workspace`,
/// as scripts/test.sh runs it, builds every package's binaries first). A test run of this
/// package alone does not build it, so one older than serve's sources is refused rather than
/// tested.
fn serve_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/PROFILE/deps/TEST")
        .join("serve");
    let build = "cargo build --release -p serve, or run the workspace's tests";
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e} ({build})", binary.display()));
    fn newest(folder: &Path) -> std::time::SystemTime {
        std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                if p.is_dir() {
                    newest(&p)
                } else {
                    std::fs::metadata(&p).unwrap().modified().unwrap()
                }
            })
            .max()
            .unwrap_or(std::time::UNIX_EPOCH)
    }
    for sources in ["serve/src", "proto/src", "core/src"] {
        assert!(
            newest(&repo_root().join(sources)) <= built,
            "{} is older than {sources} ({build})",
            binary.display()
        );
    }
    binary
}

/// Dockerfile instructions, each on one line (continuations joined), without comments.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
}

/// The image's HEALTHCHECK runs a command the image has (the `serve` it copies in, its `health`
/// subcommand), in exec form (no shell needed), on the port the image serves; and that command,
/// run by the real binary against a real server, passes, and fails once the server is gone.
#[test]
fn the_images_healthcheck_probes_the_server() {
    let dockerfile = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    let instructions = instructions(&dockerfile);
    let exec_form = |keyword: &str| -> Vec<String> {
        let line = instructions
            .iter()
            .rfind(|i| i.starts_with(&format!("{keyword} ")))
            .unwrap_or_else(|| panic!("deploy/Dockerfile has no {keyword}"));
        let json = &line[line
            .find('[')
            .unwrap_or_else(|| panic!("{line}: not exec form"))..];
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let healthcheck = exec_form("HEALTHCHECK");
    let (entrypoint, cmd) = (exec_form("ENTRYPOINT"), exec_form("CMD"));
    let after = |args: &[String], flag: &str| -> String {
        let i = args.iter().position(|a| a == flag);
        i.map(|i| args[i + 1].clone())
            .unwrap_or_else(|| panic!("{args:?} has no {flag}"))
    };
    assert_eq!(
        healthcheck[0], entrypoint[0],
        "the health check runs the server's binary"
    );
    assert!(
        instructions
            .iter()
            .any(|i| i.starts_with("COPY --from=build")
                && i.ends_with(&format!(" {}", entrypoint[0]))),
        "the image copies serve to {}",
        entrypoint[0]
    );
    assert_eq!(healthcheck[1], "health");
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_owned();
    let probed = after(&healthcheck, "--addr");
    assert_eq!(
        port(&probed),
        port(&after(&cmd, "--addr")),
        "the port CMD serves on"
    );

    let serve = serve_binary();
    // `serve --models M --addr 127.0.0.1:0`: the log says which port it got.
    let mut server = Command::new(&serve)
        .args(["--models"])
        .arg(repo_root().join("models"))
        .args(["--addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = std::io::BufReader::new(server.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut log, &mut line).unwrap();
        assert!(read > 0, "the server ended before listening");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // The health check exactly as the image runs it, on this server's port.
    let check = || {
        let args: Vec<String> = healthcheck[1..]
            .iter()
            .map(|a| {
                if *a == probed {
                    addr.clone()
                } else {
                    a.clone()
                }
            })
            .collect();
        Command::new(&serve).args(&args).output().unwrap()
    };
    let serving = check();
    let stdout = String::from_utf8_lossy(&serving.stdout);
    assert!(
        serving.status.success() && stdout.contains("SERVING"),
        "{serving:?}"
    );

    server.kill().unwrap();
    server.wait().unwrap();
    let gone = check();
    assert!(!gone.status.success(), "a stopped server passed: {gone:?}");
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains(&addr),
        "{gone:?}"
    );
}
