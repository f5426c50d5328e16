//! The trainer's command line refuses bad sizes and rates with an error that names the flag,
//! before it creates anything.

mod common;

use std::process::Command;

#[test]
fn bad_flags_are_refused_by_name_and_leave_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::small_dataset(dir.path(), 2);
    let run = dir.path().join("run");
    let cases: [(&[&str], &str); 7] = [
        (&["--model", "rwkv", "--embd", "0"], "--embd"),
        (&["--model", "rwkv", "--ffn-mult", "0"], "--ffn-mult"),
        (&["--model", "rwkv", "--wkv-chunk=-1"], "--wkv-chunk"),
        (&["--model", "lstm", "--hidden", "0"], "--hidden"),
        (&["--model", "lstm", "--layers", "0"], "--layers"),
        (&["--model", "rwkv", "--dropout-in", "1.5"], "--dropout-in"),
        (&["--model", "lstm", "--lr", "0"], "--lr"),
    ];
    for (flags, named) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(["train", "--device", "cpu", "--data"])
            .arg(&dataset)
            .arg("--out")
            .arg(&run)
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(
            stderr.contains(named),
            "{flags:?}: the error does not name {named}: {stderr}"
        );
        assert!(!run.exists(), "{flags:?} left a run folder behind");
    }
}
