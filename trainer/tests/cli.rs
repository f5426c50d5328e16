//! The trainer's command line refuses bad sizes and rates with an error that names the flag,
//! before it creates anything; `trainer eval` scores a run as the run itself did.

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

/// `trainer eval` on a finished run reports the test NLL that the run's results.json holds, on
/// the run's own dataset and on another given by --data; a dataset on another grid is refused
/// with its path in the error.
#[test]
fn eval_scores_a_run_as_its_results_say_and_refuses_another_grid() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::small_dataset(dir.path(), 6);
    let run = dir.path().join("run");
    let trainer = || Command::new(env!("CARGO_BIN_EXE_trainer"));
    let trained = trainer()
        .args([
            "train", "--device", "cpu", "--model", "lstm", "--hidden", "8",
        ])
        .args(["--layers", "1", "--epochs", "1", "--data"])
        .arg(&dataset)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(trained.status.success(), "{trained:?}");
    let results: trainer::train::Results =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();

    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&dataset).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    for data in [None, Some(&copy)] {
        let mut eval = trainer();
        eval.args(["eval", "--device", "cpu", "--json"]).arg(&run);
        if let Some(data) = data {
            eval.arg("--data").arg(data);
        }
        let output = eval.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["split"], "test");
        let nll = report["scores"]["nll_per_frame"].as_f64().unwrap();
        assert!(
            (nll - results.test.nll_per_frame).abs() < 1e-9,
            "eval says {nll}, the run said {}",
            results.test.nll_per_frame
        );
        assert_eq!(
            report["scores"]["frames"].as_i64().unwrap(),
            results.test.frames
        );
    }

    let seed_grid = dir.path().join("seed-grid");
    let options = pipeline::dataset::BuildOptions {
        settings: pipeline::RollSettings::seed(),
        ..Default::default()
    };
    pipeline::dataset::build(&dir.path().join("input"), &seed_grid, &options).unwrap();
    let output = trainer()
        .args(["eval", "--device", "cpu", "--data"])
        .arg(&seed_grid)
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--data") && stderr.contains("grid"),
        "{stderr}"
    );
}
