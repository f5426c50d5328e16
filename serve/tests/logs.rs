//! `PIANOROLL_LOG_FORMAT=json`: the server logs one JSON object a line (for log collectors),
//! with the level and the message as fields.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn json_logs_are_one_object_a_line() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_serve"))
        .env("PIANOROLL_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .args(["--addr", "127.0.0.1:0", "--models"])
        .arg(pianoroll_tests::repo_root().join("models"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let entry: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["timestamp"].is_string(), "{line}");
        let message = entry["fields"]["message"].as_str().unwrap().to_owned();
        assert_eq!(entry["level"], "INFO", "{line}");
        let listening = message.starts_with("listening on");
        seen.push(message);
        if listening {
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(seen.iter().any(|m| m.contains("lstm-nade")), "{seen:?}");
    assert!(seen.last().unwrap().starts_with("listening on"), "{seen:?}");
}
