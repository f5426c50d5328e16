//! A run folder works from any working directory: `config.json` records the dataset by its
//! absolute path; a relative path (as earlier versions recorded `--data`) is found from the run
//! folder's place; and a dataset that is nowhere is an error naming the file, the field and the
//! path, while the commands that need no data (export) still work.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::small_dataset;

/// `trainer ARGS` run in the folder `cwd`.
fn trainer_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn set_dataset_field(run: &Path, dataset: &str) {
    let file = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    config["dataset"] = dataset.into();
    std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

#[test]
fn a_run_is_scored_from_any_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let dataset = small_dataset(&project, 2);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();

    // Made as a person makes one: relative paths, from the folder holding both.
    let trained = trainer_in(
        &project,
        &[
            "train",
            "--device",
            "cpu",
            "--model",
            "lstm",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--epochs",
            "1",
            "--data",
            "dataset",
            "--out",
            "runs/tiny",
        ],
    );
    assert!(trained.status.success(), "{trained:?}");
    let run = project.join("runs/tiny");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    let recorded = PathBuf::from(config["dataset"].as_str().unwrap());
    assert!(recorded.is_absolute(), "config.json records {recorded:?}");
    assert_eq!(
        std::fs::canonicalize(&recorded).unwrap(),
        std::fs::canonicalize(&dataset).unwrap()
    );

    let run_arg = run.to_str().unwrap();
    let eval = |cwd: &Path| trainer_in(cwd, &["eval", "--device", "cpu", "--json", run_arg]);
    let scored = |output: &Output| -> f64 {
        assert!(output.status.success(), "{output:?}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        report["scores"]["nll_per_frame"].as_f64().unwrap()
    };
    let nll = scored(&eval(&elsewhere));

    // A run folder of an earlier version: the path as given to --data, relative to the
    // folder training ran in; found above the run folder.
    set_dataset_field(&run, "dataset");
    assert_eq!(scored(&eval(&elsewhere)), nll, "the old relative path");

    // Nowhere: the error names the file, the field and the path; export needs no data.
    set_dataset_field(&run, "gone/dataset");
    let output = eval(&elsewhere);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "scored without its dataset");
    for named in ["config.json", "`dataset`", "gone/dataset", "--data"] {
        assert!(
            stderr.contains(named),
            "the error does not name {named}: {stderr}"
        );
    }
    let model = dir.path().join("model");
    let exported = trainer_in(
        &elsewhere,
        &["export", run_arg, "-o", model.to_str().unwrap()],
    );
    assert!(exported.status.success(), "{exported:?}");
    assert!(model.join("model.json").is_file());
}
