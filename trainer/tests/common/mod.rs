//! What the trainer's integration tests share: a small dataset from the bundled data, the tiny
//! models they train (each test gives the sizes it needs), a quick training configuration, and
//! the lock that keeps libtorch's global generator to one test. The end-to-end server tests
//! (`tests/tests/serving/`) train their models from here too.

#![allow(dead_code)] // each test file uses part of this

use std::path::{Path, PathBuf};

use pianoroll::RollSettings;
use pipeline::dataset::{BuildOptions, Split, build};
use tch::Tensor;
use tch::nn::VarStore;
use trainer::config::{Schedule, TrainConfig};
use trainer::head::{HeadConfig, KeyOrder};
use trainer::lstm::LstmConfig;
use trainer::model::ModelConfig;
use trainer::rwkv::RwkvConfig;

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

/// A small LSTM of `layers` layers of `hidden` units, regularised as the original model is:
/// dropout 0.25 on the input and 0.1 on the output, none between layers, BatchNorm; a
/// Bernoulli head.
pub fn tiny_lstm(hidden: i64, layers: i64) -> LstmConfig {
    LstmConfig {
        hidden,
        layers,
        dropout_in: 0.25,
        dropout_out: 0.1,
        dropout_between: 0.0,
        batch_norm: true,
        head: HeadConfig::Bernoulli,
    }
}

/// A small LSTM of `layers` layers of `hidden` units without any dropout (BatchNorm on, a
/// Bernoulli head).
pub fn lstm_without_dropout(hidden: i64, layers: i64) -> LstmConfig {
    LstmConfig {
        dropout_in: 0.0,
        dropout_out: 0.0,
        ..tiny_lstm(hidden, layers)
    }
}

/// A small RWKV of `layers` blocks of width `embd`: a feed-forward part 4 times as wide, no
/// dropout, a Bernoulli head.
pub fn tiny_rwkv(embd: i64, layers: i64) -> RwkvConfig {
    RwkvConfig {
        layers,
        embd,
        ffn_mult: 4,
        dropout: 0.0,
        dropout_in: 0.0,
        head: HeadConfig::Bernoulli,
    }
}

/// `model` with a NADE head of `hidden` units (keys lowest first) in place of its head.
pub fn with_nade(model: ModelConfig, hidden: i64) -> ModelConfig {
    with_nade_in(model, hidden, KeyOrder::LowestFirst)
}

/// `model` with a NADE head of `hidden` units deciding keys in `order`.
pub fn with_nade_in(mut model: ModelConfig, hidden: i64, order: KeyOrder) -> ModelConfig {
    let head = HeadConfig::Nade { hidden, order };
    match &mut model {
        ModelConfig::Lstm(c) => c.head = head,
        ModelConfig::Rwkv(c) => c.head = head,
    }
    model
}

/// A quick run of `model` on `dataset`: 6 epochs of batches of 2 at a rate of 0.01 (cosine
/// schedule after 5 warm-up steps), weight decay 0.01, seed 7; no early stopping, augmentation,
/// weight average or note dropout. Tests change the fields they need.
pub fn tiny_train_config(model: ModelConfig, dataset: &Path) -> TrainConfig {
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
        settle_epochs: 0,
        ema_decay: None,
        note_dropout: 0.0,
        own_sample_epochs: 0,
        own_samples: 0.0,
        silent_start: false,
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
