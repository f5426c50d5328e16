//! The parallel and the recurrent forms of each model compute the same function: on random
//! weights and random binary inputs, 64+ steps one at a time equal one pass over the sequence.

mod common;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use trainer::lstm::LstmConfig;
use trainer::model::{Model, ModelConfig};
use trainer::rwkv::{RwkvConfig, WkvMode};

use common::{lstm_without_dropout, one_at_a_time, randomise, tiny_lstm, tiny_rwkv};

const STEPS: i64 = 70; // not a multiple of the WKV chunk: the last chunk is partial
const BATCH: i64 = 3;

fn random_frames(steps: i64) -> Tensor {
    Tensor::rand([BATCH, steps, 88], (Kind::Float, Device::Cpu))
        .lt(0.1)
        .to_kind(Kind::Float)
}

fn max_difference(config: ModelConfig, wkv: WkvMode, seed: i64) -> f64 {
    // The random draws are global: other tests of this file must not interleave theirs.
    let _turn = one_at_a_time();
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let mut model = Model::new(&vs.root(), &config);
    model.set_wkv(wkv);
    randomise(&vs);
    let x = random_frames(STEPS);

    let (parallel, _) =
        tch::no_grad(|| model.forward(&x, None, &model.zero_state(BATCH, Device::Cpu), false));
    let mut state = model.zero_state(BATCH, Device::Cpu);
    let mut worst: f64 = 0.0;
    for t in 0..STEPS {
        let (logits, next) = tch::no_grad(|| model.step(&x.select(1, t), &state));
        let difference = (logits - parallel.select(1, t))
            .abs()
            .max()
            .double_value(&[]);
        // Not f64::max, which passes over a NaN: once NaN, `worst` stays NaN.
        if difference > worst || difference.is_nan() {
            worst = difference;
        }
        state = next;
    }
    worst
}

#[test]
fn lstm_parallel_and_recurrent_forms_agree() {
    for batch_norm in [true, false] {
        let config = ModelConfig::Lstm(LstmConfig {
            dropout_between: 0.3,
            batch_norm,
            ..tiny_lstm(32, 2)
        });
        let worst = max_difference(config, WkvMode::Scan, 1);
        assert!(
            worst < 1e-5,
            "batch_norm {batch_norm}: largest difference {worst}"
        );
    }
}

#[test]
fn rwkv_parallel_and_recurrent_forms_agree() {
    for chunk in [0, 1, 7, 8, 32, 128] {
        let config = ModelConfig::Rwkv(tiny_rwkv(32, 3));
        let wkv = WkvMode::from_chunk(chunk).unwrap();
        let worst = max_difference(config, wkv, 2);
        assert!(worst < 1e-5, "chunk {chunk}: largest difference {worst}");
    }
}

/// RWKV's dropout acts in training only: two training passes differ, evaluation passes (and the
/// recurrent step the export uses) do not.
#[test]
fn rwkv_dropout_only_in_training() {
    let _turn = one_at_a_time();
    let (_vs, model) = random_small_rwkv(4, 0.5);
    let x = random_frames(20);
    let state = model.zero_state(BATCH, Device::Cpu);
    assert_dropout_only_in_training(|train| {
        tch::no_grad(|| model.forward(&x, &state, WkvMode::Chunked(16), train).0)
    });
}

/// The LSTM's between-layer dropout acts in training only, like RWKV's: with the other two
/// dropouts off, two training passes differ and evaluation passes do not.
#[test]
fn lstm_between_layer_dropout_only_in_training() {
    let _turn = one_at_a_time();
    let (_vs, model) = random_small_lstm(5, 0.5, true);
    let x = random_frames(20);
    let state = model.zero_state(BATCH, Device::Cpu);
    assert_dropout_only_in_training(|train| {
        tch::no_grad(|| model.forward(&x, None, &state, train).0)
    });
}

/// A 2-layer RWKV of width 16 with random weights drawn from `seed`, dropout only on its
/// blocks. The caller holds `one_at_a_time()`; the VarStore keeps the weights alive.
fn random_small_rwkv(seed: i64, dropout: f64) -> (VarStore, trainer::rwkv::Rwkv) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let config = RwkvConfig {
        dropout,
        ..tiny_rwkv(16, 2)
    };
    let model = trainer::rwkv::Rwkv::new(&vs.root(), config);
    randomise(&vs);
    (vs, model)
}

/// A 16×2 LSTM with random weights drawn from `seed`, dropout only between its layers. The
/// caller holds `one_at_a_time()` (the draws are global); the VarStore keeps the weights alive.
fn random_small_lstm(
    seed: i64,
    dropout_between: f64,
    batch_norm: bool,
) -> (VarStore, trainer::lstm::Lstm) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let config = LstmConfig {
        dropout_between,
        batch_norm,
        ..lstm_without_dropout(16, 2)
    };
    let model = trainer::lstm::Lstm::new(&vs.root(), config);
    randomise(&vs);
    (vs, model)
}

/// Two training passes of `pass` differ (fresh dropout draws); two evaluation passes are equal.
fn assert_dropout_only_in_training(pass: impl Fn(bool) -> Tensor) {
    let difference = |a: Tensor, b: Tensor| (a - b).abs().max().double_value(&[]);
    assert!(
        difference(pass(true), pass(true)) > 1e-3,
        "dropout draws differ"
    );
    assert_eq!(difference(pass(false), pass(false)), 0.0);
}

/// Why `batch_norm: false` exists: in training, BatchNorm's statistics span the whole batch, so a
/// frame's logits move when a later frame changes (a model trained on one piece per batch learns
/// to use that). Without BatchNorm, training-mode logits depend only on the past.
#[test]
fn lstm_training_pass_is_causal_only_without_batch_norm() {
    for batch_norm in [true, false] {
        let _turn = one_at_a_time();
        let (_vs, model) = random_small_lstm(6, 0.0, batch_norm);
        let x = random_frames(20);
        // The same frames except the last five, which are all on.
        let changed = x.copy();
        let _ = changed.narrow(1, 15, 5).fill_(1.0);
        let state = model.zero_state(BATCH, Device::Cpu);
        let past_logits = |frames: &Tensor| {
            tch::no_grad(|| model.forward(frames, None, &state, true).0).narrow(1, 0, 15)
        };
        let difference = (past_logits(&x) - past_logits(&changed))
            .abs()
            .max()
            .double_value(&[]);
        if batch_norm {
            assert!(difference > 1e-4, "future frames leak through BatchNorm");
        } else {
            assert_eq!(difference, 0.0, "without BatchNorm the past is unaffected");
        }
    }
}

/// The whole-sequence scan (training's WKV) matches the per-step loop in outputs and in every
/// gradient, on a sequence long and decays fast enough (600 steps, w up to e⁴) that the scan's
/// exponents i·w pass 3·10⁴ (computed in f32, the scan fails this test); and it carries its
/// state across a split.
#[test]
fn rwkv_scan_matches_the_step_loop_in_values_and_gradients_on_long_sequences() {
    let _turn = one_at_a_time();
    let (vs, model) = random_small_rwkv(6, 0.0);
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            if name.ends_with("time_decay") {
                var.copy_(&(Tensor::rand_like(&var) * 7.0 - 3.0)); // w = e^-3 .. e^4
            }
        }
    });
    let steps = 600;
    let x = random_frames(steps);
    let probe = Tensor::randn([BATCH, steps, 88], (Kind::Float, Device::Cpu));
    let state = model.zero_state(BATCH, Device::Cpu);
    let run = |mode: WkvMode| {
        for mut var in vs.trainable_variables() {
            var.zero_grad();
        }
        let logits = model.forward(&x, &state, mode, false).0;
        (&logits * &probe).sum(Kind::Float).backward();
        let mut gradients: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(name, var)| (name, var.grad().copy()))
            .collect();
        gradients.sort_by(|a, b| a.0.cmp(&b.0));
        (logits.detach(), gradients)
    };
    let (scan, scan_gradients) = run(WkvMode::Scan);
    let (looped, loop_gradients) = run(WkvMode::Loop);
    let worst = (&scan - &looped).abs().max().double_value(&[]);
    assert!(worst < 1e-4, "logits differ by up to {worst}");
    // Through a carried state (truncated backpropagation): two halves equal the whole.
    let halves = tch::no_grad(|| {
        let (first, middle) = model.forward(&x.narrow(1, 0, 250), &state, WkvMode::Scan, false);
        let rest = x.narrow(1, 250, steps - 250);
        let (second, _) = model.forward(&rest, &middle, WkvMode::Scan, false);
        Tensor::cat(&[first, second], 1)
    });
    let worst = (&halves - &scan).abs().max().double_value(&[]);
    assert!(
        worst < 1e-4,
        "two halves differ from the whole by up to {worst}"
    );
    for ((name, a), (_, b)) in scan_gradients.iter().zip(&loop_gradients) {
        let scale = b.abs().max().double_value(&[]).max(1e-3);
        let difference = (a - b).abs().max().double_value(&[]) / scale;
        assert!(
            difference < 1e-4,
            "{name}: gradients differ by {difference} of their largest value"
        );
    }
}
