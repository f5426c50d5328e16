//! The trainer's command line refuses bad sizes and rates with an error that names the flag,
//! before it creates anything; `trainer eval` scores a run as the run itself did.

mod common;

use std::process::Command;

#[test]
fn bad_flags_are_refused_by_name_and_leave_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::small_dataset(dir.path(), 2);
    let run = dir.path().join("run");
    let cases: [(&[&str], &str); 13] = [
        (&["--model", "rwkv", "--embd", "0"], "--embd"),
        (&["--model", "rwkv", "--ffn-mult", "0"], "--ffn-mult"),
        (&["--model", "rwkv", "--wkv-chunk=-1"], "--wkv-chunk"),
        (&["--model", "lstm", "--hidden", "0"], "--hidden"),
        (&["--model", "lstm", "--layers", "0"], "--layers"),
        (&["--model", "rwkv", "--dropout-in", "1.5"], "--dropout-in"),
        (&["--model", "lstm", "--lr", "0"], "--lr"),
        (
            &["--model", "lstm", "--seq-len=-5", "--max-steps", "1"],
            "--seq-len",
        ),
        (
            &["--model", "rwkv", "--max-steps", "0", "--epochs", "1"],
            "--max-steps",
        ),
        // Settling epochs without transpositions to settle from.
        (
            &["--model", "lstm", "--settle-epochs", "2"],
            "--settle-epochs",
        ),
        // Own-sample epochs need settling epochs before them and a share beside them, and the
        // share is a probability.
        (
            &[
                "--model",
                "rwkv",
                "--own-sample-epochs",
                "2",
                "--own-samples",
                "0.3",
            ],
            "--own-sample-epochs",
        ),
        (
            &[
                "--model",
                "rwkv",
                "--transpose-augment",
                "2",
                "--settle-epochs",
                "2",
                "--own-sample-epochs",
                "2",
            ],
            "--own-samples",
        ),
        (
            &["--model", "rwkv", "--own-samples", "1.0"],
            "--own-samples",
        ),
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
    let results: trainer::run::Results =
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
        settings: pianoroll::RollSettings::seed(),
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

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
}

/// Every column of `metrics.csv` but the timings (seconds, frames/s).
fn learning_columns(run: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|line| line.split(',').take(7).collect::<Vec<_>>().join(","))
        .collect()
}

/// A recipe file and the same settings given as flags make the same run: the same metrics
/// epoch by epoch and the same test scores. The run records the recipe's name and text, and a
/// flag overrides the recipe.
#[test]
fn a_recipe_and_the_same_flags_train_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::small_dataset(dir.path(), 6);
    let recipe = dir.path().join("tiny-rwkv.toml");
    let text = "model = \"rwkv\"\nlayers = 1\nembd = 8\nffn_mult = 2\ndropout = 0.1\n\
                epochs = 2\nbatch_size = 2\nlr = 3e-3\nschedule = \"triangular\"\n\
                note_dropout = 0.1\nema_decay = 0.9\nseed = 4\n";
    std::fs::write(&recipe, text).unwrap();
    let train = |name: &str, args: &[&str]| {
        let run = dir.path().join(name);
        let output = trainer()
            .args(["train", "--device", "cpu", "--data"])
            .arg(&dataset)
            .arg("--out")
            .arg(&run)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        run
    };
    let from_recipe = train("recipe", &["--recipe", recipe.to_str().unwrap()]);
    let from_flags = train(
        "flags",
        &[
            "--model",
            "rwkv",
            "--layers",
            "1",
            "--embd",
            "8",
            "--ffn-mult",
            "2",
            "--dropout",
            "0.1",
            "--epochs",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "3e-3",
            "--schedule",
            "triangular",
            "--note-dropout",
            "0.1",
            "--ema-decay",
            "0.9",
            "--seed",
            "4",
        ],
    );
    assert_eq!(
        learning_columns(&from_recipe),
        learning_columns(&from_flags)
    );
    assert_eq!(
        learning_columns(&from_recipe).len(),
        3,
        "a header and two epochs"
    );
    let results = |run: &std::path::Path| -> trainer::run::Results {
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap()
    };
    assert_eq!(results(&from_recipe).test, results(&from_flags).test);
    assert_eq!(results(&from_recipe).recipe.as_deref(), Some("tiny-rwkv"));

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from_recipe.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["recipe"]["name"], "tiny-rwkv");
    assert_eq!(config["recipe"]["toml"], text);
    assert!(
        config["model"].get("wkv_chunk").is_none(),
        "a speed choice is not saved"
    );

    let overridden = train(
        "overridden",
        &["--recipe", recipe.to_str().unwrap(), "--epochs", "1"],
    );
    assert_eq!(learning_columns(&overridden).len(), 2, "--epochs 1 wins");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(overridden.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["epochs"].as_u64(), config["model"]["embd"].as_u64()),
        (Some(1), Some(8))
    );
}

/// `trainer train` takes every recipe setting as a flag: the recipe's own flags, flattened in
/// (`config.rs` checks that they are the recipe's fields), listed once in `--help`.
#[test]
fn train_takes_every_recipe_setting_as_a_flag() {
    let output = trainer().args(["train", "--help"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).unwrap();
    let listed = |flag: &str| {
        help.lines()
            .filter(|line| line.split_whitespace().next() == Some(flag))
            .count()
    };
    let recipe = <trainer::config::Recipe as clap::Args>::augment_args(clap::Command::new("r"));
    let flags: Vec<String> = recipe
        .get_arguments()
        .map(|arg| format!("--{}", arg.get_long().unwrap()))
        .collect();
    assert!(flags.len() >= 26, "{flags:?}");
    for flag in &flags {
        assert_eq!(listed(flag), 1, "{flag} in trainer train --help:\n{help}");
    }
    assert_eq!(listed("--recipe"), 1, "{help}");
}

/// A bad recipe is refused before anything is created, naming the file and the field.
#[test]
fn bad_recipes_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::small_dataset(dir.path(), 2);
    let run = dir.path().join("run");
    // Each small enough to end in seconds if it were accepted.
    let tiny = "epochs = 1\nmax_steps = 1\nlayers = 1\n";
    let lstm = format!("model = \"lstm\"\nhidden = 4\n{tiny}");
    let rwkv = format!("model = \"rwkv\"\nembd = 4\n{tiny}");
    let cases = [
        (
            "typo.toml",
            "model = \"lstm\"\nhiden = 8\n".to_owned(),
            "hiden",
        ),
        (
            "bad.toml",
            "model = \"lstm\"\nhidden = 0\n".to_owned(),
            "hidden",
        ),
        ("nomodel.toml", "hidden = 8\n".to_owned(), "model"),
        ("negative.toml", format!("{lstm}seq_len = -5\n"), "seq_len"),
        ("zero.toml", format!("{rwkv}seq_len = 0\n"), "seq_len"),
        (
            "warmup.toml",
            format!("{lstm}warmup_steps = -5\n"),
            "warmup_steps",
        ),
        ("rwkv-in-lstm.toml", format!("{lstm}embd = 8\n"), "embd"),
        (
            "lstm-in-rwkv.toml",
            format!("{rwkv}dropout_out = 0.1\n"),
            "dropout_out",
        ),
        (
            "no-nade.toml",
            format!("{lstm}nade_hidden = 8\n"),
            "nade_hidden",
        ),
    ];
    for (name, text, named) in cases {
        let recipe = dir.path().join(name);
        std::fs::write(&recipe, &text).unwrap();
        let output = trainer()
            .args(["train", "--device", "cpu", "--data"])
            .arg(&dataset)
            .arg("--out")
            .arg(&run)
            .arg("--recipe")
            .arg(&recipe)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} was accepted");
        assert!(
            stderr.contains(named) && stderr.contains(name),
            "{name}: {stderr}"
        );
        assert!(!run.exists(), "{name} left a run folder behind");
    }
    let output = trainer()
        .args(["train", "--recipe", "/no/such/recipe.toml", "--data"])
        .arg(&dataset)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/no/such/recipe.toml"), "{stderr}");
}

/// Missing runs and datasets are named as what they are, once.
#[test]
fn missing_runs_and_datasets_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.mid");
    let output = trainer()
        .args(["sample", "/no/such/run", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("/no/such/run") && !stderr.contains("config.json"),
        "{stderr}"
    );
    let output = trainer()
        .args([
            "train",
            "--model",
            "lstm",
            "--data",
            "/no/such/dataset",
            "--out",
        ])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/no/such/dataset"), "{stderr}");
    assert!(
        stderr.matches("No such file or directory").count() <= 1,
        "{stderr}"
    );
}

/// A reader that stops early ends every printing command quietly (no panic, no "Broken
/// pipe"), as the platform's tools end; what the command writes to files is complete.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::small_dataset(dir.path(), 4);
    let run = dir.path().join("run");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (data, run_arg) = (path(&dataset), path(&run));
    let (midi, png, models) = (
        path(&dir.path().join("s.mid")),
        path(&dir.path().join("c.png")),
        path(&dir.path().join("model")),
    );
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "train", "--device", "cpu", "--model", "lstm", "--hidden", "8", "--layers", "1",
            "--epochs", "1", "--data", &data, "--out", &run_arg,
        ],
        vec!["eval", "--device", "cpu", &run_arg],
        vec!["eval", "--device", "cpu", "--json", &run_arg],
        vec![
            "sample", "--device", "cpu", &run_arg, "--steps", "8", "-o", &midi,
        ],
        vec!["export", &run_arg, "-o", &models],
        vec!["compare", &run_arg, &run_arg, "-o", &png],
    ];
    for args in commands {
        let out = pianoroll_tests::run_with_closed_stdout(trainer().args(&args));
        pianoroll_tests::assert_ended_quietly(&format!("trainer {args:?}"), &out);
    }
    assert!(run.join("results.json").exists());
    assert!(dir.path().join("model/model.json").exists());
}

/// `--recipe auto` on a tiny corpus chooses the tiny rule over the family's best recipe (LSTM
/// unless `--model` says otherwise), records it as recipe `auto` with its text, and takes flags
/// over it like any recipe.
#[test]
fn recipe_auto_chooses_from_the_corpus_and_records_its_choice() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::small_dataset(dir.path(), 4);
    for (model, family) in [(None, "lstm"), (Some("rwkv"), "rwkv")] {
        let run = dir.path().join(family);
        let mut command = trainer();
        command
            .args(["train", "--device", "cpu", "--recipe", "auto", "--data"])
            .arg(&dataset)
            .arg("--out")
            .arg(&run)
            // Small enough to train in a moment; the rule's other choices stay.
            .args(["--epochs", "1", "--settle-epochs", "1", "--layers", "1"])
            .args(["--nade-hidden", "4"]);
        match model {
            Some(kind) => command.args(["--model", kind, "--embd", "8"]),
            None => command.args(["--hidden", "8"]),
        };
        let output = command.output().unwrap();
        assert!(output.status.success(), "{family}: {output:?}");
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["recipe"]["name"], "auto");
        let text = config["recipe"]["toml"].as_str().unwrap();
        assert!(
            text.contains("tiny") && text.contains(&format!("recipes/{family}-nade-aug.toml")),
            "{text}"
        );
        let written = config.to_string();
        assert!(written.contains("highest-first"), "{written}");
        // One epoch transposed within ±5 (a tiny corpus's), then one settling epoch on the
        // pieces as they are, each after a silent frame (the base recipe's).
        assert_eq!(config["transpose_augment"], 5, "{written}");
        assert_eq!(config["silent_start"], true, "{written}");
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
        assert_eq!(results["epochs"], 2, "{results}");
        assert!(written.contains(&format!("\"{family}\"")), "{written}");
    }
}
