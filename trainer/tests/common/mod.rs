//! What the trainer's integration tests share: a small dataset from the bundled data, a quick
//! training configuration, and the lock that keeps libtorch's global generator to one test.

#![allow(dead_code)] // each test file uses part of this

use std::path::{Path, PathBuf};

use pianoroll::RollSettings;
use pipeline::dataset::{BuildOptions, Split, build};
use tch::Tensor;
use tch::nn::VarStore;
use trainer::config::{Schedule, TrainConfig};
use trainer::model::ModelConfig;

/// libtorch's random generator (dropout, initialisation) is global to the process: tests that
/// train take turns so each run sees only its own draws.
pub static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    TRAINING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn nottingham() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/nottingham")
}

/// A dataset of the first `n` pieces of each bundled split.
pub fn small_dataset(root: &Path, n: usize) -> PathBuf {
    let input = root.join("input");
    for split in Split::ALL {
        let folder = input.join(split.as_str());
        std::fs::create_dir_all(&folder).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(nottingham().join(split.as_str()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files.into_iter().take(n) {
            std::fs::copy(&file, folder.join(file.file_name().unwrap())).unwrap();
        }
    }
    let output = root.join("dataset");
    build(&input, &output, &BuildOptions::default()).unwrap();
    output
}

pub fn config(model: ModelConfig, dataset: &Path) -> TrainConfig {
    TrainConfig {
        model,
        dataset: dataset.to_owned(),
        roll_settings: RollSettings::benchmark(),
        epochs: 6,
        max_steps: None,
        batch_size: 2,
        seq_len: None,
        lr: 1e-2,
        weight_decay: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        schedule: Schedule::Cosine,
        warmup_steps: 5,
        clip_norm: 1.0,
        patience: None,
        transpose_augment: 0,
        ema_decay: None,
        note_dropout: 0.0,
        seed: 7,
        recipe: None,
    }
}

/// Overwrite every variable with random values of a moderate scale, so no zero-initialised layer
/// hides a difference between the two forms.
pub fn randomise(vs: &VarStore) {
    tch::no_grad(|| {
        // In name order: `variables()` is a HashMap, whose order changes from run to run, and
        // the draws must not.
        let mut variables: Vec<_> = vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, mut var) in variables {
            let random = if name.ends_with("time_decay") {
                Tensor::rand_like(&var) * 4.0 - 3.0 // w = e^-3 .. e^1
            } else if name.ends_with("running_var") {
                Tensor::rand_like(&var) + 0.5
            } else {
                Tensor::randn_like(&var) * 0.5
            };
            var.copy_(&random);
        }
    });
}
