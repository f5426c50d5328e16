//! The training loop, top to bottom: batches → loss → clipped AdamW step → evaluation on valid
//! every epoch → checkpoints → test at the end. What it writes, and where, is the run folder's
//! business ([`crate::run`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pianoroll::{KEY_COUNT, PianoRoll};
use pipeline::dataset::Split;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::config::TrainConfig;
use crate::data::{Batch, SplitData, SplitMix64, drop_notes, plan_batches};
use crate::evaluate::evaluate;
use crate::metrics::{key_rate_baseline, key_rates, nll_sum};
use crate::model::{Model, parameter_count};
use crate::optim::AdamW;
use crate::run::{
    BEST_EPOCH_FILE, BEST_WEIGHTS_FILE, BestEpoch, CURVES_FILE, EpochRow, LAST_OPTIMIZER_FILE,
    LAST_PROGRESS_FILE, LAST_WEIGHTS_FILE, Progress, RESULTS_FILE, Results, RunFolder, RunSummary,
};
use crate::rwkv::WkvMode;
use crate::state::State;

/// How (not what) a run computes: chosen per invocation, never saved with the run.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub device: Device,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Stop after this epoch as if interrupted (continue with [`resume`]).
    pub stop_after_epoch: Option<usize>,
    /// How RWKV's parallel form evaluates WKV.
    pub wkv: WkvMode,
}

impl RunOptions {
    /// On `device`, quietly, to the end, WKV as one scan.
    pub fn on(device: Device) -> RunOptions {
        RunOptions {
            device,
            progress: false,
            stop_after_epoch: None,
            wkv: WkvMode::Scan,
        }
    }
}

/// Train a model as `config` says into the run folder `run` (created; must not exist); returns
/// the test results when training finished, `None` when `stop_after_epoch` stopped it.
pub fn train(config: &TrainConfig, run: &Path, options: RunOptions) -> Result<Option<Results>> {
    // The folder, then the data, before creating anything.
    RunFolder::check_new(run)?;
    load_split(config, Split::Train)?;
    let folder = RunFolder::create(run, config)?;
    run_epochs(config, &folder, options, None)
}

/// Continue the run in `run` from its last checkpoint (after a crash, a kill or
/// `stop_after_epoch`), or from the start when no epoch had finished. Ends exactly where an
/// uninterrupted run with the same config ends, or refuses when the run folder's files do not
/// belong together ([`RunFolder::check_committed`]).
pub fn resume(run: &Path, options: RunOptions) -> Result<Option<Results>> {
    let folder = RunFolder::new(run);
    let mut config = folder
        .config()
        .with_context(|| format!("--resume {}", run.display()))?;
    // Resolved here, where its error can name the field, rather than when the data is read.
    config.dataset = folder
        .dataset()
        .with_context(|| format!("--resume {}", run.display()))?;
    if folder.file(RESULTS_FILE).exists() {
        bail!(
            "--resume {}: this run has finished ({RESULTS_FILE} exists)",
            run.display()
        );
    }
    let last = folder.progress()?;
    if last.is_none() {
        // The folder has its config (it is created with it), which is all a run starts from.
        tracing::info!(
            "{}: no epoch had finished (no {LAST_PROGRESS_FILE}); starting from the first",
            run.display()
        );
    }
    run_epochs(&config, &folder, options, last)
}

fn load_split(config: &TrainConfig, split: Split) -> Result<SplitData> {
    SplitData::load(&config.dataset, split, Some(&config.roll_settings)).with_context(|| {
        format!(
            "the {} split of dataset {}",
            split.as_str(),
            config.dataset.display()
        )
    })
}

fn run_epochs(
    config: &TrainConfig,
    run: &RunFolder,
    options: RunOptions,
    resume_from: Option<Progress>,
) -> Result<Option<Results>> {
    let device = options.device;
    let train_data = load_split(config, Split::Train)?;
    let valid_data = load_split(config, Split::Valid)?;

    tch::manual_seed(config.seed as i64);
    let mut vs = VarStore::new(device);
    let mut model = Model::new(&vs.root(), &config.model);
    model.set_wkv(options.wkv);
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

    // What a killed run left half done: finish the committed epoch's publishing, then remove
    // the rest (staged files of an epoch that never committed, temporary files).
    if let Some(last) = &resume_from {
        match last.row {
            Some(_) => publish(run, last)?,
            // A run folder of an earlier version: its rows after the checkpoint are dropped.
            None => run.truncate_metrics(last.epoch)?,
        }
    }
    let removed = run.remove_leftovers()?;
    if !removed.is_empty() {
        tracing::info!(
            "removed what an interrupted run left in {}: {}",
            run.path().display(),
            removed.join(", ")
        );
    }
    let (mut rng, mut step, mut best, first_epoch, mut settle_from) = match &resume_from {
        None => {
            run.start_metrics()?;
            (SplitMix64(config.seed), 0, None, 1, None)
        }
        Some(last) => {
            run.check_committed(last)?;
            let weights = run.file(LAST_WEIGHTS_FILE);
            vs.load(&weights)
                .with_context(|| format!("loading {}", weights.display()))?;
            optimizer.load(&run.file(LAST_OPTIMIZER_FILE))?;
            tracing::info!(
                "resuming {} after epoch {}, step {}",
                run.path().display(),
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
                last.settle_from,
            )
        }
    };
    let stopped_by_max_steps = resume_from.as_ref().is_some_and(|l| l.max_steps_reached);
    let mut epochs_done = first_epoch - 1;
    let mut last = resume_from;
    let mut epoch = first_epoch;
    // The epochs: the main ones (transposed when `transpose_augment` is on) until `epochs` or
    // patience ends them, then the settling ones (`settle_epochs`, on the pieces as they are),
    // then those on the pieces with some of the model's own samples as inputs
    // (`own_sample_epochs`).
    'epochs: loop {
        if stopped_by_max_steps {
            break 'epochs;
        }
        match settle_from {
            Some(from) if epoch >= from + config.epochs_after_main() => break 'epochs,
            Some(_) => {}
            None => {
                // Checked before each epoch rather than after, so a run resumed after its
                // patience ran out goes straight on as well.
                let patience_ran_out = match (config.patience, best) {
                    (Some(patience), Some((best_epoch, _))) => {
                        let out = epoch - 1 - best_epoch >= patience;
                        if out {
                            let then = if config.settle_epochs == 0 {
                                "stopping early"
                            } else {
                                "ending the transposed epochs"
                            };
                            tracing::info!(
                                "valid NLL has not improved for {patience} epochs (best: epoch {best_epoch}); {then}"
                            );
                        }
                        out
                    }
                    _ => false,
                };
                if epoch > config.epochs || patience_ran_out {
                    if config.settle_epochs == 0 {
                        break 'epochs;
                    }
                    tracing::info!(
                        "settling: {} epochs on the pieces as they are",
                        config.settle_epochs
                    );
                    settle_from = Some(epoch);
                }
            }
        }
        let last_epoch =
            settle_from.map_or(config.epochs, |from| from - 1) + config.epochs_after_main();
        let (semitones, own_samples) = match settle_from {
            None => (config.transpose_augment, 0.0),
            Some(from) if epoch >= from + config.settle_epochs => (0, config.own_samples),
            Some(_) => (0, 0.0),
        };
        // Dropout draws depend only on (seed, epoch), so a resumed run draws the same ones.
        tch::manual_seed(config.seed.wrapping_add(epoch as u64) as i64);
        let started = Instant::now();
        let bar = if options.progress {
            ProgressBar::new(batches_per_epoch).with_style(
                ProgressStyle::with_template(
                    "epoch {msg} {bar:30} {pos}/{len} batches {per_sec} {eta}",
                )
                .expect("valid template"),
            )
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(format!("{epoch}/{last_epoch}"));
        let (mut loss_sum, mut loss_frames) = (0.0, 0i64);
        let mut lr = config.lr_at(step, planned_steps);
        let mut max_steps_reached = false;
        'batches: for indices in plan_batches(&train_data.rolls, config.batch_size, Some(&mut rng))
        {
            let shifted: Vec<PianoRoll>;
            let rolls: Vec<&PianoRoll> = if semitones == 0 {
                indices.iter().map(|&i| &train_data.rolls[i]).collect()
            } else {
                shifted = indices
                    .iter()
                    .map(|&i| train_data.rolls[i].shifted(rng.semitones(semitones)))
                    .collect();
                shifted.iter().collect()
            };
            let batch = Batch::new(&rolls, config.silent_start, device);
            let window = config.seq_len.filter(|&l| l > 0).unwrap_or(batch.steps());
            let mut state = model.zero_state(rolls.len() as i64, device);
            let mut start = 0;
            while start < batch.steps() {
                let part = batch.window(start, window.min(batch.steps() - start));
                start += window;
                lr = config.lr_at(step, planned_steps);
                let inputs =
                    with_own_samples(&model, &part.inputs, &part.mask, &state, own_samples);
                let inputs = drop_notes(&inputs, config.note_dropout);
                let (rows, next) = model.forward(&inputs, Some(&part.mask), &state, true);
                let logits = model.head.logits(&rows, &part.targets);
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
                            run.file(LAST_WEIGHTS_FILE).display()
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
        let train_seconds = started.elapsed().as_secs_f64();
        let eval_started = Instant::now();
        let scores = optimizer.with_average(|| {
            evaluate(
                &model,
                &valid_data,
                config.batch_size,
                config.silent_start,
                device,
            )
        });
        let eval_seconds = eval_started.elapsed().as_secs_f64();
        let row = EpochRow {
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
        };
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
            settle_from,
            row: Some(row),
            checksums: BTreeMap::new(),
        };
        last = Some(record_epoch(
            &vs,
            &mut optimizer,
            run,
            progress,
            last.as_ref(),
        )?);
        epochs_done = epoch;
        if max_steps_reached {
            break 'epochs;
        }
        if options.stop_after_epoch.is_some_and(|e| epoch >= e) && epoch < last_epoch {
            tracing::info!(
                "stopped after epoch {epoch}; continue with --resume {}",
                run.path().display()
            );
            return Ok(None);
        }
        epoch += 1;
    }

    // Test with the best weights.
    let (best_epoch, _) = best.context("no epoch finished")?;
    let mut best_vs = VarStore::new(device);
    let mut best_model = Model::new(&best_vs.root(), &config.model);
    best_model.set_wkv(options.wkv);
    best_vs.load(run.file(BEST_WEIGHTS_FILE))?;
    let test_data = load_split(config, Split::Test)?;
    let results = Results {
        model: config.model.kind().into(),
        parameters,
        epochs: epochs_done,
        steps: step,
        best_epoch,
        valid: evaluate(
            &best_model,
            &valid_data,
            config.batch_size,
            config.silent_start,
            device,
        ),
        test: evaluate(
            &best_model,
            &test_data,
            config.batch_size,
            config.silent_start,
            device,
        ),
        test_key_rate_baseline_nll: key_rate_baseline(&train_data.rolls, &test_data.rolls),
        recipe: config.recipe.as_ref().map(|r| r.name.clone()),
    };
    run.write_json(RESULTS_FILE, &results)?;
    Ok(Some(results))
}

/// `inputs` [B, T, 88] with each frame after the first replaced, with probability `share`, by
/// a frame the model samples for it from the frames before (from `state`, without dropout or
/// gradients): one pass of parallel scheduled sampling (Duckworth et al. 2019). The model's
/// row at step t is its distribution over the frame after input t, which is input t + 1.
///
/// Why: teacher forcing only ever feeds a model the true frames, so it never learns to carry
/// on from a frame it chose itself; the RWKV-NADE's samples drift from the data over many
/// frames while each frame it samples after true ones is close to the data
/// (`docs/experiments/notebook.md`). Its own frames in its inputs, the true frames as its
/// targets, teach it to recover.
fn with_own_samples(
    model: &Model,
    inputs: &Tensor,
    mask: &Tensor,
    state: &State,
    share: f64,
) -> Tensor {
    let steps = inputs.size()[1];
    if share <= 0.0 || steps < 2 {
        return inputs.shallow_clone();
    }
    tch::no_grad(|| {
        let (rows, _) = model.forward(inputs, Some(mask), state, false);
        let size = rows.size();
        let flat = rows.reshape([-1, size[2]]);
        let options = (Kind::Float, inputs.device());
        let count = flat.size()[0];
        let uniform = Tensor::rand([count, KEY_COUNT as i64], options);
        let temperature = Tensor::ones([count, 1], options);
        let sampled = model
            .head
            .sample(&flat, &temperature, &uniform)
            .frame
            .reshape([size[0], size[1], KEY_COUNT as i64]);
        // The guesses at inputs 1..T, and which of them replace the true frames.
        let guesses = sampled.narrow(1, 0, steps - 1);
        let true_frames = inputs.narrow(1, 1, steps - 1);
        let replace = Tensor::rand([size[0], steps - 1, 1], options).lt(share);
        let mixed = guesses.where_self(&replace, &true_frames);
        Tensor::cat(&[inputs.narrow(1, 0, 1), mixed], 1)
    })
}

/// End an epoch: stage its checkpoint files, commit it by writing `last.json`, publish it (the
/// steps at the top of [`crate::run`]). Returns what `last.json` now holds.
fn record_epoch(
    vs: &VarStore,
    optimizer: &mut AdamW,
    run: &RunFolder,
    mut progress: Progress,
    previous: Option<&Progress>,
) -> Result<Progress> {
    let epoch = progress.epoch;
    if let Some(row) = &progress.row {
        tracing::info!(
            "epoch {epoch}: train NLL {:.3}, valid NLL {:.3}, accuracy {:.3}, {:.0} frames/s",
            row.train_nll,
            row.valid_nll,
            row.valid_accuracy,
            row.train_frames_per_s
        );
    }
    let save = |path: &Path| -> Result<()> { Ok(vs.save(path)?) };
    let mut checksums = BTreeMap::new();
    checksums.insert(
        LAST_WEIGHTS_FILE.to_owned(),
        run.stage(epoch, LAST_WEIGHTS_FILE, save)?,
    );
    checksums.insert(
        LAST_OPTIMIZER_FILE.to_owned(),
        run.stage(epoch, LAST_OPTIMIZER_FILE, |path| optimizer.write(path))?,
    );
    let best_weights = if progress.best_epoch == epoch {
        // The weights valid was scored with.
        optimizer.with_average(|| run.stage(epoch, BEST_WEIGHTS_FILE, save))?
    } else {
        // Still the best epoch's file: its checksum as recorded then (a resumed run folder
        // of an earlier version recorded none: the file's own).
        match previous.and_then(|p| p.checksums.get(BEST_WEIGHTS_FILE)) {
            Some(recorded) => recorded.clone(),
            None => run.sha256(BEST_WEIGHTS_FILE)?.with_context(|| {
                format!(
                    "{} is missing (epoch {} was the best)",
                    run.file(BEST_WEIGHTS_FILE).display(),
                    progress.best_epoch
                )
            })?,
        }
    };
    checksums.insert(BEST_WEIGHTS_FILE.to_owned(), best_weights);
    progress.checksums = checksums;
    run.write_json(LAST_PROGRESS_FILE, &progress)?;
    publish(run, &progress)?;
    Ok(progress)
}

/// Put the committed epoch `last` in place: its staged files renamed, `best.json`, its row in
/// `metrics.csv`, the curves. Every part can be repeated (a resume does, after a kill).
fn publish(run: &RunFolder, last: &Progress) -> Result<()> {
    let epoch = last.epoch;
    run.publish_staged(epoch, LAST_WEIGHTS_FILE)?;
    run.publish_staged(epoch, LAST_OPTIMIZER_FILE)?;
    if last.best_epoch == epoch {
        run.publish_staged(epoch, BEST_WEIGHTS_FILE)?;
        let best = BestEpoch {
            epoch,
            step: last.step,
            valid_nll: last.best_valid_nll,
        };
        run.write_json(BEST_EPOCH_FILE, &best)?;
    }
    if let Some(row) = &last.row {
        run.publish_metrics_row(row)?;
    }
    // The run's own curves, redrawn every epoch.
    let summary = RunSummary::read(run.path())?;
    run.write_bytes(CURVES_FILE, &crate::compare::curves_png(&[summary]))
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};

    use crate::head::{HeadConfig, KeyOrder};
    use crate::model::{Model, ModelConfig};
    use crate::rwkv::RwkvConfig;

    /// A tiny RWKV-NADE whose every key sits at probability `rate`, whatever it hears.
    fn sure_model(vs: &VarStore, rate: f64) -> Model {
        let config = ModelConfig::Rwkv(RwkvConfig {
            layers: 1,
            embd: 16,
            ffn_mult: 4,
            dropout: 0.0,
            dropout_in: 0.0,
            head: HeadConfig::Nade {
                hidden: 8,
                order: KeyOrder::LowestFirst,
            },
        });
        let model = Model::new(&vs.root(), &config);
        model.set_output_bias(&[rate; 88]);
        model
    }

    /// The replaced frames are the model's samples, about `share` of them, never the first;
    /// the rest are the true frames.
    #[test]
    fn own_samples_replace_a_share_of_the_frames_after_the_first() {
        tch::manual_seed(5);
        let steps = 400;
        // True frames with 1 to 88 keys on, none silent and none full.
        let inputs = Tensor::rand([2, steps, 88], (Kind::Float, Device::Cpu))
            .lt(0.3)
            .to_kind(Kind::Float);
        let _ = inputs.narrow(-1, 0, 1).fill_(1.0);
        let _ = inputs.narrow(-1, 1, 1).fill_(0.0);
        let mask = Tensor::ones([2, steps], (Kind::Bool, Device::Cpu));
        for (rate, sample) in [(1e-9, 0.0), (1.0 - 1e-9, 1.0)] {
            let vs = VarStore::new(Device::Cpu);
            let model = sure_model(&vs, rate);
            let state = model.zero_state(2, Device::Cpu);
            let same = super::with_own_samples(&model, &inputs, &mask, &state, 0.0);
            assert!(same.equal(&inputs));

            let mixed = super::with_own_samples(&model, &inputs, &mask, &state, 0.25);
            assert!(mixed.narrow(1, 0, 1).equal(&inputs.narrow(1, 0, 1)));
            let (mut replaced, mut kept) = (0, 0);
            for b in 0..2 {
                for t in 1..steps {
                    let frame = mixed.get(b).get(t);
                    if frame.equal(&inputs.get(b).get(t)) {
                        kept += 1;
                    } else {
                        assert!(frame.equal(&frame.full_like(sample)), "frame {t}");
                        replaced += 1;
                    }
                }
            }
            let share = replaced as f64 / (replaced + kept) as f64;
            assert!((0.2..0.3).contains(&share), "{share}");
        }
    }
}
