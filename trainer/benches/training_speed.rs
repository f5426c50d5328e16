//! Training throughput on CPU (forward + backward, frames/s) of the two model families, of
//! RWKV's WKV computed as one scan, chunked (several chunk lengths) and as a per-step loop, and
//! of the two output heads at the best recipes' sizes.
//!
//! `cargo bench -p trainer --bench training_speed [-- heads]` (set OMP_NUM_THREADS as for
//! training; `heads` measures the heads table only).
//! Inputs are random binary frames of the Nottingham density; figures go to BENCHMARKS.md.

use std::time::Instant;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use trainer::head::HeadConfig;
use trainer::lstm::{Lstm, LstmConfig};
use trainer::model::{Model, ModelConfig};
use trainer::rwkv::{Rwkv, RwkvConfig, WkvMode};

const BATCH: i64 = 8;
const STEPS: i64 = 256;
const REPEATS: usize = 3;

fn frames() -> (Tensor, Tensor) {
    let x = Tensor::rand([BATCH, STEPS, 88], (Kind::Float, Device::Cpu))
        .lt(0.05)
        .to_kind(Kind::Float);
    let y = Tensor::rand([BATCH, STEPS, 88], (Kind::Float, Device::Cpu))
        .lt(0.05)
        .to_kind(Kind::Float);
    (x, y)
}

/// Best time of `REPEATS` forward + backward passes over `batch` × `STEPS` frames, as frames
/// per second.
fn measure_batch(label: &str, batch: i64, mut pass: impl FnMut() -> Tensor) {
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let started = Instant::now();
        pass().backward();
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "{label}: {:.0} frames/s ({batch}×{STEPS} frames in {best:.3} s)",
        (batch * STEPS) as f64 / best
    );
}

fn measure(label: &str, pass: impl FnMut() -> Tensor) {
    measure_batch(label, BATCH, pass)
}

/// The output heads at the sizes of the best recipes, one piece per batch as they train: the
/// whole model (body and head) with the loss the trainer uses.
fn heads() {
    let x = Tensor::rand([1, STEPS, 88], (Kind::Float, Device::Cpu))
        .lt(0.05)
        .to_kind(Kind::Float);
    let y = Tensor::rand([1, STEPS, 88], (Kind::Float, Device::Cpu))
        .lt(0.05)
        .to_kind(Kind::Float);
    for head in [
        HeadConfig::Bernoulli,
        HeadConfig::Nade {
            hidden: 128,
            order: Default::default(),
        },
    ] {
        let lstm = ModelConfig::Lstm(LstmConfig {
            hidden: 256,
            batch_norm: false,
            head,
            ..LstmConfig::original()
        });
        let rwkv = ModelConfig::Rwkv(RwkvConfig {
            embd: 128,
            head,
            ..RwkvConfig::original()
        });
        for (name, config) in [("LSTM 256x2", lstm), ("RWKV 6x128", rwkv)] {
            let vs = VarStore::new(Device::Cpu);
            let model = Model::new(&vs.root(), &config);
            let state = model.zero_state(1, Device::Cpu);
            measure_batch(&format!("{name}, {head:?} head, batch 1"), 1, || {
                let (rows, _) = model.forward(&x, None, &state, true);
                model
                    .head
                    .logits(&rows, &y)
                    .binary_cross_entropy_with_logits::<Tensor>(
                        &y,
                        None,
                        None,
                        tch::Reduction::Mean,
                    )
            });
        }
    }
}

fn main() {
    tch::manual_seed(0);
    heads();
    if std::env::args().any(|a| a == "heads") {
        return; // `-- heads`: the heads table only
    }
    let (x, y) = frames();
    let loss = |logits: Tensor| {
        logits.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::Mean)
    };

    {
        let vs = VarStore::new(Device::Cpu);
        let model = Lstm::new(&vs.root(), LstmConfig::original());
        let state = model.zero_state(BATCH, Device::Cpu);
        measure("LSTM 512x2", || {
            loss(model.forward(&x, None, &state, true).0)
        });
    }
    for (layers, embd) in [(6, 232), (6, 512)] {
        for mode in [
            WkvMode::Scan,
            WkvMode::Loop,
            WkvMode::Chunked(4),
            WkvMode::Chunked(8),
            WkvMode::Chunked(16),
            WkvMode::Chunked(32),
            WkvMode::Chunked(64),
        ] {
            let vs = VarStore::new(Device::Cpu);
            let config = RwkvConfig {
                layers,
                embd,
                ffn_mult: 4,
                dropout: 0.0,
                dropout_in: 0.0,
                head: Default::default(),
            };
            let model = Rwkv::new(&vs.root(), config);
            let state = model.zero_state(BATCH, Device::Cpu);
            let label = match mode {
                WkvMode::Chunked(chunk) => {
                    format!("RWKV {layers}x{embd}, WKV chunked ({chunk} steps)")
                }
                _ => format!("RWKV {layers}x{embd}, WKV {mode:?}"),
            };
            measure(&label, || loss(model.forward(&x, &state, mode, true).0));
        }
    }
}
