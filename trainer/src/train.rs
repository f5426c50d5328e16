//! The training loop, top to bottom: batches → loss → clipped AdamW step → evaluation on valid
//! every epoch → checkpoints → test at the end.
//!
//! A run folder holds `config.json`, `metrics.csv` (one row per epoch), `last.safetensors` and
//! `best.safetensors` (lowest valid NLL; `best.json` says which epoch), the optimizer's moments
//! in `last.optim.safetensors`, and `results.json` with the test scores. Every file is written
//! to a temporary name and renamed, so a crash never leaves a torn checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::dataset::Split;
use pipeline::render::write_atomic;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::data::{Batch, SplitData, SplitMix64, plan_batches};
use crate::metrics::{Scores, Totals, key_rate_baseline, nll_sum};
use crate::model::{Model, ModelConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warmup, then cosine decay to 10% of the peak.
    Cosine,
    /// The original project's triangular cycle: up to the peak over the first half of training,
    /// back down over the second.
    Triangular,
    /// Linear warmup, then constant.
    Constant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub dataset: PathBuf,
    pub roll_settings: pipeline::RollSettings,
    pub epochs: usize,
    pub max_steps: Option<u64>,
    pub batch_size: usize,
    /// Truncated backpropagation through time: optimise every this many steps, carrying the
    /// (detached) state across windows. `None` = whole pieces.
    pub seq_len: Option<i64>,
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub schedule: Schedule,
    pub warmup_steps: u64,
    pub clip_norm: f64,
    pub seed: u64,
}

impl TrainConfig {
    /// Learning rate at optimiser step `step` of `total`.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        let total = total.max(1) as f64;
        let s = step as f64;
        match self.schedule {
            Schedule::Triangular => {
                let half = total / 2.0;
                let position = if s < half {
                    s / half
                } else {
                    (total - s) / half
                };
                self.lr * (0.1 + 0.9 * position.clamp(0.0, 1.0))
            }
            Schedule::Cosine | Schedule::Constant if s < self.warmup_steps as f64 => {
                self.lr * (s + 1.0) / self.warmup_steps as f64
            }
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let warm = self.warmup_steps as f64;
                let progress = ((s - warm) / (total - warm).max(1.0)).clamp(0.0, 1.0);
                self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
            }
        }
    }
}

/// Adam with decoupled weight decay (AdamW) on matrices; vectors (biases, norms, RWKV's time
/// parameters) are not decayed. Written out rather than taken from tch so that its moments can
/// be checkpointed and a resumed run continues exactly.
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: i64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
}

impl AdamW {
    const EPS: f64 = 1e-8;

    pub fn new(vs: &VarStore, config: &TrainConfig) -> AdamW {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &(String, Tensor)| p.1.zeros_like();
        AdamW {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            params,
            step: 0,
            beta1: config.beta1,
            beta2: config.beta2,
            weight_decay: config.weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// Scale gradients so their global L2 norm is at most `max`; returns the norm before.
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        let norms: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .map(|g| g.square().sum(Kind::Float))
            .collect();
        if norms.is_empty() {
            return 0.0;
        }
        let norm = Tensor::stack(&norms, 0)
            .sum(Kind::Float)
            .sqrt()
            .double_value(&[]);
        if norm > max {
            tch::no_grad(|| {
                for (_, p) in &self.params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(max / (norm + 1e-6));
                    }
                }
            });
        }
        norm
    }

    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let correction1 = 1.0 - b1.powi(self.step as i32);
        let correction2 = 1.0 - b2.powi(self.step as i32);
        tch::no_grad(|| {
            for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                *m = &*m * b1 + &g * (1.0 - b1);
                *v = &*v * b2 + g.square() * (1.0 - b2);
                if p.dim() >= 2 && self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let update = (&*m / correction1) / ((&*v / correction2).sqrt() + Self::EPS);
                let _ = p.g_sub_(&(update * lr));
            }
        });
    }

    /// Moments and step count, for `last.optim.safetensors`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (((name, _), m), v) in self.params.iter().zip(&self.m).zip(&self.v) {
            named.push((format!("m.{name}"), m.shallow_clone()));
            named.push((format!("v.{name}"), v.shallow_clone()));
        }
        named.push(("step".into(), Tensor::from(self.step)));
        let temp = path.with_extension("partial.safetensors");
        Tensor::write_safetensors(&named, &temp)?;
        std::fs::rename(&temp, path)?;
        Ok(())
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let stored: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(path)?.into_iter().collect();
        let get = |key: &str| {
            stored
                .get(key)
                .with_context(|| format!("{}: no tensor {key}", path.display()))
        };
        for (((name, p), m), v) in self.params.iter().zip(&mut self.m).zip(&mut self.v) {
            *m = get(&format!("m.{name}"))?.to_device(p.device());
            *v = get(&format!("v.{name}"))?.to_device(p.device());
        }
        self.step = get("step")?.int64_value(&[]);
        Ok(())
    }
}

/// Scores of `model` on every piece of `data`, in eval mode (no dropout, running statistics).
pub fn evaluate(model: &Model, data: &SplitData, batch_size: usize, device: Device) -> Scores {
    let mut totals = Totals::default();
    tch::no_grad(|| {
        for indices in plan_batches(&data.rolls, batch_size, None) {
            let rolls: Vec<_> = indices.iter().map(|&i| &data.rolls[i]).collect();
            let batch = Batch::new(&rolls, device);
            let state = model.zero_state(rolls.len() as i64, device);
            let (logits, _) = model.forward(&batch.inputs, Some(&batch.mask), &state, false);
            totals.add(&logits, &batch.targets, &batch.mask);
        }
    });
    totals.scores()
}

/// One row of `metrics.csv`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub step: u64,
    pub train_nll: f64,
    pub valid_nll: f64,
    pub valid_bce: f64,
    pub valid_accuracy: f64,
    pub lr: f64,
    pub seconds: f64,
    pub train_frames_per_s: f64,
    pub eval_frames_per_s: f64,
}

impl EpochRow {
    pub const HEADER: &str = "epoch,step,train_nll,valid_nll,valid_bce,valid_accuracy,lr,seconds,train_frames_per_s,eval_frames_per_s";

    fn csv(&self) -> String {
        format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.2},{:.1},{:.1}",
            self.epoch,
            self.step,
            self.train_nll,
            self.valid_nll,
            self.valid_bce,
            self.valid_accuracy,
            self.lr,
            self.seconds,
            self.train_frames_per_s,
            self.eval_frames_per_s
        )
    }
}

/// What `results.json` holds at the end of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub model: String,
    pub parameters: i64,
    pub epochs: usize,
    pub steps: u64,
    pub best_epoch: usize,
    pub valid: Scores,
    pub test: Scores,
    /// NLL per frame of each key at its training rate: the bar any model must clear.
    pub test_key_rate_baseline_nll: f64,
}

pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

fn save_weights(vs: &VarStore, path: &Path) -> Result<()> {
    let temp = path.with_extension("partial.safetensors");
    vs.save(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Train a model as `config` says into the run folder `run` (created; must not exist).
pub fn train(config: &TrainConfig, run: &Path, device: Device, progress: bool) -> Result<Results> {
    if run.exists() {
        bail!("{} already exists: choose a new run folder", run.display());
    }
    let train_data = SplitData::load(&config.dataset, Split::Train, Some(&config.roll_settings))?;
    let valid_data = SplitData::load(&config.dataset, Split::Valid, Some(&config.roll_settings))?;
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    write_json(&run.join("config.json"), config)?;

    tch::manual_seed(config.seed as i64);
    let vs = VarStore::new(device);
    let model = Model::new(&vs.root(), &config.model);
    let parameters = parameter_count(&vs);
    tracing::info!(
        "{} model, {parameters} parameters, on {device:?}; {} training frames",
        config.model.kind(),
        train_data.predicted_frames()
    );
    let mut optimizer = AdamW::new(&vs, config);

    let batches_per_epoch = plan_batches(&train_data.rolls, config.batch_size, None).len() as u64;
    let windows_per_batch = |steps: i64| match config.seq_len {
        Some(len) if len > 0 => (steps + len - 1) / len,
        _ => 1,
    };
    // Optimiser steps in the whole run, for the schedule (windows make several per batch).
    let planned_steps = {
        let per_epoch: u64 = plan_batches(&train_data.rolls, config.batch_size, None)
            .iter()
            .map(|b| {
                windows_per_batch(
                    b.iter()
                        .map(|&i| train_data.rolls[i].len() as i64 - 1)
                        .max()
                        .unwrap_or(1),
                ) as u64
            })
            .sum();
        let all = per_epoch * config.epochs as u64;
        config.max_steps.map_or(all, |m| m.min(all))
    };

    let mut csv = std::fs::File::create(run.join("metrics.csv"))?;
    writeln!(csv, "{}", EpochRow::HEADER)?;
    let mut rng = SplitMix64(config.seed);
    let mut step: u64 = 0;
    let mut best: Option<(usize, f64)> = None;
    let mut lr = config.lr_at(0, planned_steps);
    let mut epochs_done = 0;
    'epochs: for epoch in 1..=config.epochs {
        let started = Instant::now();
        let bar = if progress {
            ProgressBar::new(batches_per_epoch).with_style(
                ProgressStyle::with_template(
                    "epoch {msg} {bar:30} {pos}/{len} batches {per_sec} {eta}",
                )
                .expect("valid template"),
            )
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(format!("{epoch}/{}", config.epochs));
        let (mut loss_sum, mut loss_frames) = (0.0, 0i64);
        for indices in plan_batches(&train_data.rolls, config.batch_size, Some(&mut rng)) {
            let rolls: Vec<_> = indices.iter().map(|&i| &train_data.rolls[i]).collect();
            let batch = Batch::new(&rolls, device);
            let window = config.seq_len.filter(|&l| l > 0).unwrap_or(batch.steps());
            let mut state = model.zero_state(rolls.len() as i64, device);
            let mut start = 0;
            while start < batch.steps() {
                let part = batch.window(start, window.min(batch.steps() - start));
                start += window;
                lr = config.lr_at(step, planned_steps);
                let (logits, next) = model.forward(&part.inputs, Some(&part.mask), &state, true);
                let (sum, frames) = nll_sum(&logits, &part.targets, &part.mask);
                if frames == 0 {
                    continue;
                }
                let loss = &sum / frames as f64;
                let value = loss.double_value(&[]);
                if !value.is_finite() {
                    bail!(
                        "training loss became {value} at epoch {epoch}, step {step}; stopped. The last good checkpoint is {}",
                        run.join("last.safetensors").display()
                    );
                }
                optimizer.zero_grad();
                loss.backward();
                optimizer.clip_grad_norm(config.clip_norm);
                optimizer.step(lr);
                state = next.detach();
                loss_sum += sum.double_value(&[]);
                loss_frames += frames;
                step += 1;
                if config.max_steps.is_some_and(|m| step >= m) {
                    bar.finish_and_clear();
                    let row = finish_epoch(
                        &model,
                        &valid_data,
                        config,
                        device,
                        epoch,
                        step,
                        lr,
                        started,
                        loss_sum,
                        loss_frames,
                    );
                    record_epoch(&vs, &mut optimizer, run, &mut csv, &row, &mut best)?;
                    epochs_done = epoch;
                    break 'epochs;
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let row = finish_epoch(
            &model,
            &valid_data,
            config,
            device,
            epoch,
            step,
            lr,
            started,
            loss_sum,
            loss_frames,
        );
        record_epoch(&vs, &mut optimizer, run, &mut csv, &row, &mut best)?;
        epochs_done = epoch;
    }

    // Test with the best weights.
    let (best_epoch, _) = best.context("no epoch finished")?;
    let mut best_vs = VarStore::new(device);
    let best_model = Model::new(&best_vs.root(), &config.model);
    best_vs.load(run.join("best.safetensors"))?;
    let test_data = SplitData::load(&config.dataset, Split::Test, Some(&config.roll_settings))?;
    let results = Results {
        model: config.model.kind().into(),
        parameters,
        epochs: epochs_done,
        steps: step,
        best_epoch,
        valid: evaluate(&best_model, &valid_data, config.batch_size, device),
        test: evaluate(&best_model, &test_data, config.batch_size, device),
        test_key_rate_baseline_nll: key_rate_baseline(&train_data.rolls, &test_data.rolls),
    };
    write_json(&run.join("results.json"), &results)?;
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
fn finish_epoch(
    model: &Model,
    valid: &SplitData,
    config: &TrainConfig,
    device: Device,
    epoch: usize,
    step: u64,
    lr: f64,
    started: Instant,
    loss_sum: f64,
    loss_frames: i64,
) -> EpochRow {
    let train_seconds = started.elapsed().as_secs_f64();
    let eval_started = Instant::now();
    let scores = evaluate(model, valid, config.batch_size, device);
    let eval_seconds = eval_started.elapsed().as_secs_f64();
    EpochRow {
        epoch,
        step,
        train_nll: loss_sum / loss_frames.max(1) as f64,
        valid_nll: scores.nll_per_frame,
        valid_bce: scores.bce_per_pitch,
        valid_accuracy: scores.frame_accuracy,
        lr,
        seconds: train_seconds + eval_seconds,
        train_frames_per_s: loss_frames as f64 / train_seconds.max(1e-9),
        eval_frames_per_s: scores.frames as f64 / eval_seconds.max(1e-9),
    }
}

fn record_epoch(
    vs: &VarStore,
    optimizer: &mut AdamW,
    run: &Path,
    csv: &mut std::fs::File,
    row: &EpochRow,
    best: &mut Option<(usize, f64)>,
) -> Result<()> {
    tracing::info!(
        "epoch {}: train NLL {:.3}, valid NLL {:.3}, accuracy {:.3}, {:.0} frames/s",
        row.epoch,
        row.train_nll,
        row.valid_nll,
        row.valid_accuracy,
        row.train_frames_per_s
    );
    save_weights(vs, &run.join("last.safetensors"))?;
    optimizer.save(&run.join("last.optim.safetensors"))?;
    if best.is_none_or(|(_, nll)| row.valid_nll < nll) {
        save_weights(vs, &run.join("best.safetensors"))?;
        write_json(
            &run.join("best.json"),
            &serde_json::json!({ "epoch": row.epoch, "step": row.step, "valid_nll": row.valid_nll }),
        )?;
        *best = Some((row.epoch, row.valid_nll));
    }
    writeln!(csv, "{}", row.csv())?;
    csv.flush()?;
    Ok(())
}
