//! The training loop, top to bottom: batches → loss → clipped AdamW step → evaluation on valid
//! every epoch → checkpoints → test at the end.
//!
//! A run folder holds `config.json`, `metrics.csv` (one row per epoch), `last.safetensors` and
//! `best.safetensors` (lowest valid NLL; `best.json` says which epoch), the optimizer's moments
//! in `last.optim.safetensors`, `last.json` (where to resume), `curves.png` (train and valid
//! NLL per epoch) and `results.json` with the test scores. Every file is written
//! to a temporary name and renamed, so a crash never leaves a torn checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::PianoRoll;
use pipeline::dataset::Split;
use pipeline::render::write_atomic;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::data::{Batch, SplitData, SplitMix64, drop_notes, plan_batches};
use crate::metrics::{Scores, Totals, key_rate_baseline, key_rates, nll_sum};
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
    /// Early stopping: end training once this many epochs have passed without a lower valid
    /// NLL (the test then uses the best epoch's weights, as always). `None` = all epochs.
    #[serde(default)]
    pub patience: Option<usize>,
    /// Transposition augmentation: each epoch every training piece is moved by a random number
    /// of semitones in `-k..=k` (drawn from the shuffling generator, so resumes repeat it).
    /// The test pieces are all in C, so this is a regulariser, not a fix for a key mismatch.
    /// 0 = off.
    #[serde(default)]
    pub transpose_augment: u8,
    /// Weight averaging: keep an exponential moving average of the weights, updated after every
    /// optimiser step with this decay, and score valid and test with it (the best checkpoint
    /// holds the averaged weights). `None` = the raw weights.
    #[serde(default)]
    pub ema_decay: Option<f64>,
    /// Note dropout: in training, each sounding key of each input frame is silenced with this
    /// probability ([`crate::data::drop_notes`]); targets and evaluation are untouched. 0 = off.
    #[serde(default)]
    pub note_dropout: f64,
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
///
/// With `ema_decay` it also keeps an exponential moving average of the weights (Polyak
/// averaging), checkpointed with the moments; [`AdamW::with_average`] swaps it in.
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// The averaged weights, one per parameter, when averaging is on.
    average: Option<(f64, Vec<Tensor>)>,
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
        let average = config.ema_decay.map(|decay| {
            let copies = params.iter().map(|(_, p)| p.detach().copy()).collect();
            (decay, copies)
        });
        AdamW {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            average,
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
            if let Some((decay, average)) = &mut self.average {
                for ((_, p), a) in self.params.iter().zip(average) {
                    // a ← decay·a + (1 − decay)·p
                    let _ = a.lerp_(p, 1.0 - *decay);
                }
            }
        });
    }

    /// Run `f` with the averaged weights in the model (the raw ones are put back after);
    /// without averaging, just run `f`.
    pub fn with_average<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let Some((_, average)) = &self.average else {
            return f();
        };
        let raw: Vec<Tensor> = tch::no_grad(|| {
            self.params
                .iter_mut()
                .zip(average)
                .map(|((_, p), a)| {
                    let raw = p.detach().copy();
                    p.copy_(a);
                    raw
                })
                .collect()
        });
        let result = f();
        tch::no_grad(|| {
            for ((_, p), raw) in self.params.iter_mut().zip(&raw) {
                p.copy_(raw);
            }
        });
        result
    }

    /// Moments and step count, for `last.optim.safetensors`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (((name, _), m), v) in self.params.iter().zip(&self.m).zip(&self.v) {
            named.push((format!("m.{name}"), m.shallow_clone()));
            named.push((format!("v.{name}"), v.shallow_clone()));
        }
        if let Some((_, average)) = &self.average {
            for ((name, _), a) in self.params.iter().zip(average) {
                named.push((format!("average.{name}"), a.shallow_clone()));
            }
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
        if let Some((_, average)) = &mut self.average {
            for ((name, p), a) in self.params.iter().zip(average) {
                *a = get(&format!("average.{name}"))?.to_device(p.device());
            }
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

/// Where a run stands after an epoch: `last.json`, written with each checkpoint.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Progress {
    epoch: usize,
    step: u64,
    /// Shuffling generator state at the end of the epoch.
    rng: u64,
    best_epoch: usize,
    best_valid_nll: f64,
    /// True when `max_steps` ended training in this epoch.
    max_steps_reached: bool,
}

/// Train a model as `config` says into the run folder `run` (created; must not exist). With
/// `stop_after_epoch`, stop after that epoch as if interrupted (continue with [`resume`]);
/// returns the test results when training finished.
pub fn train(
    config: &TrainConfig,
    run: &Path,
    device: Device,
    progress: bool,
    stop_after_epoch: Option<usize>,
) -> Result<Option<Results>> {
    if run.exists() {
        bail!(
            "{} already exists: choose a new run folder, or --resume it",
            run.display()
        );
    }
    // Check the data before creating anything.
    SplitData::load(&config.dataset, Split::Train, Some(&config.roll_settings))?;
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    write_json(&run.join("config.json"), config)?;
    run_epochs(config, run, device, progress, None, stop_after_epoch)
}

/// Continue the run in `run` from its last checkpoint (after a crash, a kill or
/// `stop_after_epoch`). Ends exactly where an uninterrupted run with the same config ends.
pub fn resume(
    run: &Path,
    device: Device,
    progress: bool,
    stop_after_epoch: Option<usize>,
) -> Result<Option<Results>> {
    let read = |name: &str| -> Result<Vec<u8>> {
        let path = run.join(name);
        std::fs::read(&path)
            .with_context(|| format!("--resume {}: cannot read {name}", run.display()))
    };
    if run.join("results.json").exists() {
        bail!(
            "--resume {}: this run has finished (results.json exists)",
            run.display()
        );
    }
    let config: TrainConfig = serde_json::from_slice(&read("config.json")?).with_context(|| {
        format!(
            "{}: not a trainer config",
            run.join("config.json").display()
        )
    })?;
    let last: Progress = serde_json::from_slice(
        &read("last.json").with_context(|| "no epoch has finished yet: start the run again")?,
    )
    .with_context(|| format!("{}: unreadable", run.join("last.json").display()))?;
    run_epochs(&config, run, device, progress, Some(last), stop_after_epoch)
}

fn run_epochs(
    config: &TrainConfig,
    run: &Path,
    device: Device,
    progress: bool,
    resume_from: Option<Progress>,
    stop_after_epoch: Option<usize>,
) -> Result<Option<Results>> {
    let train_data = SplitData::load(&config.dataset, Split::Train, Some(&config.roll_settings))?;
    let valid_data = SplitData::load(&config.dataset, Split::Valid, Some(&config.roll_settings))?;

    tch::manual_seed(config.seed as i64);
    let mut vs = VarStore::new(device);
    let model = Model::new(&vs.root(), &config.model);
    // Each key starts at its training rate (a resumed run loads its own weights below).
    model.set_output_bias(&key_rates(&train_data.rolls));
    let parameters = parameter_count(&vs);
    tracing::info!(
        "{} model, {parameters} parameters, on {device:?}; {} training frames",
        config.model.kind(),
        train_data.predicted_frames()
    );
    let mut optimizer = AdamW::new(&vs, config);

    let windows_per_batch = |steps: i64| match config.seq_len {
        Some(len) if len > 0 => (steps + len - 1) / len,
        _ => 1,
    };
    let plan = plan_batches(&train_data.rolls, config.batch_size, None);
    let batches_per_epoch = plan.len() as u64;
    // Optimiser steps in the whole run, for the schedule (windows make several per batch).
    let planned_steps = {
        let longest = |b: &Vec<usize>| {
            b.iter()
                .map(|&i| train_data.rolls[i].len() as i64 - 1)
                .max()
                .unwrap_or(1)
        };
        let per_epoch: u64 = plan
            .iter()
            .map(|b| windows_per_batch(longest(b)) as u64)
            .sum();
        let all = per_epoch * config.epochs as u64;
        config.max_steps.map_or(all, |m| m.min(all))
    };

    let metrics_path = run.join("metrics.csv");
    let (mut rng, mut step, mut best, first_epoch) = match resume_from {
        None => {
            std::fs::write(&metrics_path, format!("{}\n", EpochRow::HEADER))?;
            (SplitMix64(config.seed), 0, None, 1)
        }
        Some(last) => {
            vs.load(run.join("last.safetensors"))
                .with_context(|| format!("loading {}", run.join("last.safetensors").display()))?;
            optimizer.load(&run.join("last.optim.safetensors"))?;
            // Rows after the checkpoint (none, unless a crash came between the two writes).
            let text = std::fs::read_to_string(&metrics_path)?;
            let kept: Vec<&str> = text.lines().take(1 + last.epoch).collect();
            std::fs::write(&metrics_path, kept.join("\n") + "\n")?;
            tracing::info!(
                "resuming {} after epoch {}, step {}",
                run.display(),
                last.epoch,
                last.step
            );
            let first = if last.max_steps_reached {
                config.epochs + 1
            } else {
                last.epoch + 1
            };
            (
                SplitMix64(last.rng),
                last.step,
                Some((last.best_epoch, last.best_valid_nll)),
                first,
            )
        }
    };
    let mut csv = std::fs::OpenOptions::new()
        .append(true)
        .open(&metrics_path)?;
    let mut epochs_done = first_epoch - 1;
    'epochs: for epoch in first_epoch..=config.epochs {
        // Checked before each epoch rather than after, so a run resumed after its patience ran
        // out goes straight to the test as well.
        if let (Some(patience), Some((best_epoch, _))) = (config.patience, best)
            && epoch - 1 - best_epoch >= patience
        {
            tracing::info!(
                "valid NLL has not improved for {patience} epochs (best: epoch {best_epoch}); stopping early"
            );
            break 'epochs;
        }
        // Dropout draws depend only on (seed, epoch), so a resumed run draws the same ones.
        tch::manual_seed(config.seed.wrapping_add(epoch as u64) as i64);
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
        let mut lr = config.lr_at(step, planned_steps);
        let mut max_steps_reached = false;
        'batches: for indices in plan_batches(&train_data.rolls, config.batch_size, Some(&mut rng))
        {
            let shifted: Vec<PianoRoll>;
            let rolls: Vec<&PianoRoll> = if config.transpose_augment == 0 {
                indices.iter().map(|&i| &train_data.rolls[i]).collect()
            } else {
                shifted = indices
                    .iter()
                    .map(|&i| train_data.rolls[i].shifted(rng.semitones(config.transpose_augment)))
                    .collect();
                shifted.iter().collect()
            };
            let batch = Batch::new(&rolls, device);
            let window = config.seq_len.filter(|&l| l > 0).unwrap_or(batch.steps());
            let mut state = model.zero_state(rolls.len() as i64, device);
            let mut start = 0;
            while start < batch.steps() {
                let part = batch.window(start, window.min(batch.steps() - start));
                start += window;
                lr = config.lr_at(step, planned_steps);
                let inputs = drop_notes(&part.inputs, config.note_dropout);
                let (logits, next) = model.forward(&inputs, Some(&part.mask), &state, true);
                let (sum, frames) = nll_sum(&logits, &part.targets, &part.mask);
                if frames == 0 {
                    continue;
                }
                let loss = &sum / frames as f64;
                let value = loss.double_value(&[]);
                if !value.is_finite() {
                    let last_good = if epoch > 1 {
                        format!(
                            "the last good checkpoint is {}",
                            run.join("last.safetensors").display()
                        )
                    } else {
                        "no checkpoint was written yet".to_owned()
                    };
                    bail!(
                        "training loss became {value} at epoch {epoch}, step {step}; stopped: {last_good}"
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
                    max_steps_reached = true;
                    break 'batches;
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        // Valid is scored with the averaged weights when averaging is on.
        let row = optimizer.with_average(|| {
            finish_epoch(
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
            )
        });
        if best.is_none_or(|(_, nll)| row.valid_nll < nll) {
            best = Some((epoch, row.valid_nll));
        }
        let (best_epoch, best_valid_nll) = best.expect("set above");
        let progress = Progress {
            epoch,
            step,
            rng: rng.0,
            best_epoch,
            best_valid_nll,
            max_steps_reached,
        };
        record_epoch(&vs, &mut optimizer, run, &mut csv, &row, &progress)?;
        epochs_done = epoch;
        if max_steps_reached {
            break 'epochs;
        }
        if stop_after_epoch.is_some_and(|e| epoch >= e) && epoch < config.epochs {
            tracing::info!(
                "stopped after epoch {epoch}; continue with --resume {}",
                run.display()
            );
            return Ok(None);
        }
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
    Ok(Some(results))
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

/// Checkpoint, then the metrics row: a crash between the two loses a row that a resume
/// recomputes, never a checkpoint that the metrics claim.
fn record_epoch(
    vs: &VarStore,
    optimizer: &mut AdamW,
    run: &Path,
    csv: &mut std::fs::File,
    row: &EpochRow,
    progress: &Progress,
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
    if progress.best_epoch == row.epoch {
        // The weights valid was scored with.
        optimizer.with_average(|| save_weights(vs, &run.join("best.safetensors")))?;
        write_json(
            &run.join("best.json"),
            &serde_json::json!({ "epoch": row.epoch, "step": row.step, "valid_nll": row.valid_nll }),
        )?;
    }
    write_json(&run.join("last.json"), progress)?;
    writeln!(csv, "{}", row.csv())?;
    csv.flush()?;
    // The run's own curves, redrawn every epoch.
    let summary = crate::compare::read_run(run)?;
    write_atomic(
        &run.join("curves.png"),
        &crate::compare::curves_png(&[summary]),
    )?;
    Ok(())
}
