//! Tiny models of both kinds train for a few epochs on part of the bundled data (CPU, seconds):
//! the loss falls, the run folder holds what it should, and the checkpoints load.

mod common;

use std::path::Path;

use pianoroll::RollSettings;
use pipeline::dataset::Split;
use tch::Device;
use tch::nn::VarStore;
use trainer::config::{Schedule, TrainConfig};
use trainer::data::SplitData;
use trainer::evaluate::evaluate;
use trainer::head::HeadKind;
use trainer::lstm::LstmConfig;
use trainer::metrics::{key_rate_baseline, key_rates};
use trainer::model::{Model, ModelConfig};
use trainer::optim::AdamW;
use trainer::run::Results;
use trainer::rwkv::RwkvConfig;
use trainer::rwkv::WkvMode;
use trainer::train::{RunOptions, resume, train};

use common::{
    lstm_without_dropout, one_at_a_time, small_dataset, tiny_lstm, tiny_rwkv, tiny_train_config,
    with_nade,
};

fn stop_after(epoch: usize) -> RunOptions {
    RunOptions {
        stop_after_epoch: Some(epoch),
        ..RunOptions::on(Device::Cpu)
    }
}

fn metrics(run: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.split(',').map(|x| x.parse().unwrap()).collect())
        .collect()
}

fn trains_and_learns(model: ModelConfig) {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 40);
    let run = dir.path().join("run");
    let config = tiny_train_config(model, &dataset);
    let results = train(&config, &run, RunOptions::on(Device::Cpu))
        .unwrap()
        .unwrap();

    // The loss falls: mean training NLL of the last epoch well under the first's, and the model
    // beats the constant key-rate baseline on test.
    let rows = metrics(&run);
    assert_eq!(rows.len(), 6);
    let (first, last) = (rows[0][2], rows[5][2]);
    assert!(last < 0.8 * first, "train NLL {first} -> {last}");
    assert!(
        results.test.nll_per_frame < results.test_key_rate_baseline_nll,
        "{results:?}"
    );
    assert!(results.test.frame_accuracy > 0.0);

    // The artifacts exist and load: the best checkpoint scores what results.json says.
    for file in [
        "config.json",
        "best.json",
        "last.safetensors",
        "last.optim.safetensors",
    ] {
        assert!(run.join(file).is_file(), "{file}");
    }
    assert_eq!(
        &std::fs::read(run.join("curves.png")).unwrap()[..4],
        b"\x89PNG"
    );
    let summary = trainer::run::RunSummary::read(&run).unwrap();
    assert_eq!(summary.rows.len(), rows.len());
    let table = trainer::compare::table(&[summary]);
    assert!(
        table.contains(&format!("{:.3}", results.test.nll_per_frame)),
        "{table}"
    );
    let saved: TrainConfig =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved, config);
    let stored: Results =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let loaded = Model::new(&vs.root(), &saved.model);
    vs.load(run.join("best.safetensors")).unwrap();
    let test = SplitData::load(&dataset, Split::Test, Some(&saved.roll_settings)).unwrap();
    let again = evaluate(&loaded, &test, 4, saved.silent_start, Device::Cpu);
    assert!((again.nll_per_frame - stored.test.nll_per_frame).abs() < 1e-4);
}

#[test]
fn a_tiny_lstm_learns() {
    trains_and_learns(ModelConfig::Lstm(tiny_lstm(32, 1)));
}

#[test]
fn a_tiny_rwkv_learns() {
    trains_and_learns(ModelConfig::Rwkv(tiny_rwkv(32, 2)));
}

/// With a NADE head both families learn (the loss is the exact likelihood of each frame, keys
/// conditioned on the keys below them), score their checkpoint again as results.json says,
/// sample frames key by key, and export with the head named in the card.
#[test]
fn tiny_models_with_a_nade_head_learn_and_sample() {
    let lstm = with_nade(
        ModelConfig::Lstm(LstmConfig {
            batch_norm: false,
            ..lstm_without_dropout(32, 1)
        }),
        16,
    );
    let rwkv = with_nade(ModelConfig::Rwkv(tiny_rwkv(32, 2)), 16);
    for model in [lstm, rwkv] {
        trains_and_learns(model);
    }

    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 6);
    let run = dir.path().join("run");
    let mut config = tiny_train_config(lstm, &dataset);
    config.epochs = 1;
    train(&config, &run, RunOptions::on(Device::Cpu)).unwrap();
    let loaded = trainer::run::load(&run, Device::Cpu).unwrap();
    let generate = |seed| {
        trainer::sample::generate(&loaded.model, false, &[], 24, 1.0, seed, Device::Cpu).unwrap()
    };
    let (a, b) = (generate(3), generate(3));
    assert_eq!(a.len(), 24);
    assert_eq!(a, b, "same seed, same music");
    assert_ne!(a, generate(4), "another seed, other music");
    let card = trainer::export::export(&run, &dir.path().join("model"), false).unwrap();
    assert_eq!(card.head, HeadKind::Nade);
}

/// A model that memorises four pieces soon gets worse on valid; with `patience` the run stops
/// that many epochs after its best one, tests the best weights and says so in results.json.
/// A run that patience ends early: up to 40 epochs of a wide one-layer LSTM, one piece a batch,
/// at a constant rate, stopped after 2 epochs without a better valid NLL.
fn patient_config(dataset: &Path) -> TrainConfig {
    let mut config = tiny_train_config(ModelConfig::Lstm(lstm_without_dropout(128, 1)), dataset);
    config.epochs = 40;
    config.batch_size = 1;
    config.weight_decay = 0.0;
    config.schedule = Schedule::Constant;
    config.patience = Some(2);
    config
}

#[test]
fn early_stopping_ends_the_run_after_patience_epochs_without_progress() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 4);
    let run = dir.path().join("run");
    let config = patient_config(&dataset);
    let results = train(&config, &run, RunOptions::on(Device::Cpu))
        .unwrap()
        .unwrap();
    let rows = metrics(&run);
    assert!(rows.len() < 40, "no early stop in {} epochs", rows.len());
    assert_eq!(results.epochs, rows.len());
    assert_eq!(results.best_epoch + 2, rows.len(), "{results:?}");
    let best_valid = rows.iter().map(|r| r[3]).fold(f64::INFINITY, f64::min);
    assert_eq!(rows[results.best_epoch - 1][3], best_valid);
    assert!(
        rows[results.best_epoch..]
            .iter()
            .all(|r| r[3] >= best_valid)
    );
}

/// With transpositions and settling epochs, patience ends the transposed epochs, not the run:
/// the settling epochs follow the epoch at which it ran out.
#[test]
fn patience_ends_the_transposed_epochs_and_the_settling_ones_follow() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 4);
    let run = dir.path().join("run");
    let mut config = patient_config(&dataset);
    config.transpose_augment = 2;
    config.settle_epochs = 3;
    let results = train(&config, &run, RunOptions::on(Device::Cpu))
        .unwrap()
        .unwrap();
    let rows = metrics(&run);
    // The first epoch after which two epochs passed without a better valid NLL.
    let mut best = (0, f64::INFINITY);
    let mut transposed = None;
    for (i, row) in rows.iter().enumerate() {
        let epoch = i + 1;
        if row[3] < best.1 {
            best = (epoch, row[3]);
        }
        if epoch - best.0 >= 2 {
            transposed = Some(epoch);
            break;
        }
    }
    let transposed = transposed.expect("patience never ran out");
    assert!(transposed < 40);
    assert_eq!(rows.len(), transposed + 3, "{results:?}");
    assert_eq!(results.epochs, rows.len());
}

/// Before any training step the output bias holds each key's training rate, so an untrained
/// model already scores about the constant key-rate baseline (a zero bias would score about
/// 88·ln 2 ≈ 61 nats per frame).
#[test]
fn untrained_models_start_at_the_key_rates() {
    let _turn = one_at_a_time(); // initialisation draws from libtorch's global generator
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 20);
    let settings = RollSettings::benchmark();
    let train_split = SplitData::load(&dataset, Split::Train, Some(&settings)).unwrap();
    let baseline = key_rate_baseline(&train_split.rolls, &train_split.rolls);
    for config in [
        ModelConfig::Lstm(LstmConfig::original()),
        ModelConfig::Rwkv(RwkvConfig {
            embd: 64,
            layers: 2,
            ..RwkvConfig::original()
        }),
    ] {
        let vs = VarStore::new(Device::Cpu);
        let model = Model::new(&vs.root(), &config);
        model.set_output_bias(&key_rates(&train_split.rolls));
        let nll = evaluate(&model, &train_split, 4, false, Device::Cpu).nll_per_frame;
        assert!(
            (nll - baseline).abs() < 1.5,
            "{}: untrained NLL {nll}, key-rate baseline {baseline}",
            config.kind()
        );
    }
}

#[test]
fn a_diverging_run_stops_with_a_clear_message() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 12);
    let mut config = tiny_train_config(ModelConfig::Lstm(lstm_without_dropout(16, 1)), &dataset);
    config.lr = 1e30;
    config.clip_norm = 1e30;
    config.warmup_steps = 0;
    config.schedule = Schedule::Constant;
    let error = train(
        &config,
        &dir.path().join("run"),
        RunOptions::on(Device::Cpu),
    )
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("training loss became"), "{message}");
}

#[test]
fn a_dataset_on_another_grid_or_not_a_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 4);
    let error = SplitData::load(&dataset, Split::Valid, Some(&RollSettings::seed()))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("made on grid 1/2 beat"), "{error}");

    std::fs::write(dataset.join("valid.arrow"), b"not arrow at all").unwrap();
    let error = SplitData::load(&dataset, Split::Valid, None)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("valid.arrow"), "{error}");
}

#[test]
fn sampling_keeps_the_primer_and_repeats_with_the_seed() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 8);
    let run = dir.path().join("run");
    let mut config = tiny_train_config(ModelConfig::Rwkv(tiny_rwkv(16, 1)), &dataset);
    config.epochs = 1;
    let chunked = RunOptions {
        wkv: WkvMode::Chunked(32),
        ..RunOptions::on(Device::Cpu)
    };
    train(&config, &run, chunked).unwrap();

    let loaded = trainer::run::load(&run, Device::Cpu).unwrap();
    let primer =
        SplitData::load(&dataset, Split::Test, None).unwrap().rolls[0].frames()[..16].to_vec();
    let generate = |seed| {
        trainer::sample::generate(&loaded.model, false, &primer, 40, 1.0, seed, Device::Cpu)
            .unwrap()
    };
    let (a, b, c) = (generate(1), generate(1), generate(2));
    assert_eq!(a.len(), 56);
    assert_eq!(&a.frames()[..16], primer.as_slice());
    assert_eq!(a, b, "same seed, same music");
    assert_ne!(a, c, "another seed, other music");
    assert!(
        trainer::sample::generate(&loaded.model, false, &primer, 4, 0.0, 1, Device::Cpu).is_err()
    );

    // A checkpoint that does not fit the config is refused with the file named.
    std::fs::write(run.join("broken.safetensors"), b"garbage").unwrap();
    let error = trainer::run::load(&run.join("broken.safetensors"), Device::Cpu)
        .err()
        .unwrap();
    assert!(
        format!("{error:#}").contains("broken.safetensors"),
        "{error:#}"
    );
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_ends() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 10);
    // Dropout on, between the layers too: its random draws must line up as well.
    let model = ModelConfig::Lstm(LstmConfig {
        dropout_between: 0.2,
        ..tiny_lstm(16, 2)
    });
    let mut config = tiny_train_config(model, &dataset);
    // Transposition draws come from the shuffling generator: they must line up as well, and
    // so must the settling and own-sample epochs after them (the run is stopped in all three
    // phases).
    config.epochs = 4;
    config.transpose_augment = 2;
    config.settle_epochs = 3;
    config.own_sample_epochs = 2;
    // The weight average is checkpointed with the optimiser and scores valid and test.
    config.ema_decay = Some(0.9);
    // Note dropout draws from libtorch's generator, seeded per epoch like dropout.
    config.note_dropout = 0.1;
    // So do the own-sample inputs: which frames are replaced, and the samples themselves.
    config.own_samples = 0.2;
    let whole = dir.path().join("whole");
    let sliced = dir.path().join("sliced");
    let a = train(&config, &whole, RunOptions::on(Device::Cpu))
        .unwrap()
        .unwrap();
    assert!(train(&config, &sliced, stop_after(2)).unwrap().is_none());
    assert!(!sliced.join("results.json").exists());
    assert!(resume(&sliced, stop_after(5)).unwrap().is_none());
    assert!(resume(&sliced, stop_after(8)).unwrap().is_none());
    let b = resume(&sliced, RunOptions::on(Device::Cpu))
        .unwrap()
        .unwrap();

    assert_eq!(a.test, b.test);
    assert_eq!((a.steps, a.best_epoch), (b.steps, b.best_epoch));
    // Four transposed epochs, then three settling ones and two own-sample ones at the
    // schedule's floor (a tenth of the rate), each one as many steps as the others.
    assert_eq!((a.epochs, b.epochs), (9, 9));
    let rows = metrics(&whole);
    assert_eq!(rows.len(), 9);
    for row in &rows[4..] {
        assert!((row[6] - config.lr / 10.0).abs() < 1e-9, "{row:?}");
        assert_eq!(row[1], row[0] * rows[0][1]);
    }
    // Every column but the timings (seconds, frames/s) is the same.
    let learning = |run: &Path| -> Vec<Vec<f64>> {
        metrics(run)
            .into_iter()
            .map(|row| row[..7].to_vec())
            .collect()
    };
    assert_eq!(learning(&whole), learning(&sliced));
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(
        read(&whole.join("last.safetensors")),
        read(&sliced.join("last.safetensors"))
    );
    let finished = resume(&sliced, RunOptions::on(Device::Cpu)).err().unwrap();
    assert!(finished.to_string().contains("has finished"), "{finished}");

    // The own samples come in the last two epochs only: the same run with two more plain
    // settling epochs instead learns the same until then, and otherwise after.
    let plain = dir.path().join("plain");
    let plain_config = TrainConfig {
        settle_epochs: 5,
        own_sample_epochs: 0,
        own_samples: 0.0,
        ..config.clone()
    };
    train(&plain_config, &plain, RunOptions::on(Device::Cpu))
        .unwrap()
        .unwrap();
    let (own, plain) = (learning(&whole), learning(&plain));
    assert_eq!(own[..7], plain[..7]);
    for epoch in 7..9 {
        assert_ne!(
            own[epoch][2],
            plain[epoch][2],
            "train NLL of epoch {}",
            epoch + 1
        );
    }
}

#[test]
fn truncated_backpropagation_trains_both_kinds() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 20);
    let models = [
        ModelConfig::Lstm(lstm_without_dropout(32, 1)),
        ModelConfig::Rwkv(tiny_rwkv(16, 1)),
    ];
    for (i, model) in models.into_iter().enumerate() {
        let mut config = tiny_train_config(model, &dataset);
        config.seq_len = Some(24);
        config.epochs = 2;
        let run = dir.path().join(format!("run{i}"));
        train(&config, &run, RunOptions::on(Device::Cpu))
            .unwrap()
            .unwrap();
        let rows = metrics(&run);
        // Windows of 24 frames: many more optimiser steps than batches (20 pieces, batch 2).
        assert!(rows[1][1] > 100.0, "steps {}", rows[1][1]);
        assert!(rows[1][2] < rows[0][2], "{rows:?}");
    }
}

/// The weight average follows a ← d·a + (1 − d)·w after each step, is what the model holds
/// inside `with_average`, and the raw weights come back after it.
#[test]
fn the_weight_average_is_swapped_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_train_config(
        ModelConfig::Lstm(LstmConfig::original()),
        &dir.path().join("unused"),
    );
    config.ema_decay = Some(0.75);
    config.weight_decay = 0.0;
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().var("w", &[3], tch::nn::Init::Const(1.0));
    let mut optimizer = AdamW::new(&vs, &config);
    let values = |t: &tch::Tensor| Vec::<f64>::try_from(t.to_kind(tch::Kind::Double)).unwrap();

    let before = values(&w);
    optimizer.zero_grad();
    (&w * tch::Tensor::from_slice(&[1.0f32, -1.0, 2.0]))
        .sum(tch::Kind::Float)
        .backward();
    optimizer.step(0.1);
    let after = values(&w);
    assert!(
        before.iter().zip(&after).all(|(b, a)| (b - a).abs() > 0.05),
        "{after:?}"
    );

    let inside = optimizer.with_average(|| values(&w));
    for ((b, a), avg) in before.iter().zip(&after).zip(&inside) {
        assert!((avg - (0.75 * b + 0.25 * a)).abs() < 1e-6, "{inside:?}");
    }
    assert_eq!(values(&w), after);
}

/// A run with a silent start also learns each piece's first frame, and its scores still count
/// the frames a run without one counts (each piece's after its first); its model card says so,
/// which is what makes the server feed the silent frame before a primer.
#[test]
fn a_silent_start_scores_the_same_frames_and_reaches_the_card() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 8);
    let model = with_nade(ModelConfig::Lstm(lstm_without_dropout(16, 1)), 8);
    let mut config = tiny_train_config(model, &dataset);
    config.epochs = 1;
    let trained = |config: &TrainConfig, run: &Path| {
        train(config, run, RunOptions::on(Device::Cpu))
            .unwrap()
            .unwrap()
    };
    let plain = trained(&config, &dir.path().join("plain"));
    config.silent_start = true;
    let run = dir.path().join("silent");
    let silent = trained(&config, &run);
    assert_eq!(silent.test.frames, plain.test.frames);
    assert_eq!(silent.valid.frames, plain.valid.frames);
    assert_ne!(silent.test.nll_per_frame, plain.test.nll_per_frame);

    let model = dir.path().join("model");
    trainer::export::export(&run, &model, false).unwrap();
    assert!(proto::card::ModelCard::read(&model).unwrap().silent_start);
    trainer::export::export(&dir.path().join("plain"), &dir.path().join("old"), false).unwrap();
    let old = proto::card::ModelCard::read(&dir.path().join("old")).unwrap();
    assert!(!old.silent_start);
}
