//! Scoring a model on a split: during training (valid every epoch, test at the end) and for
//! `trainer eval` on any checkpoint and dataset on the run's grid; with `--music`, the music
//! statistics ([`pianoroll::music`]) of pieces the model samples against those of the split.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pianoroll::PianoRoll;
use pianoroll::music::{MusicComparison, MusicCounts};
use pipeline::dataset::Split;
use serde::Serialize;
use tch::Device;

use crate::data::{Batch, SplitData, plan_batches};
use crate::metrics::{Scores, Totals, key_rate_baseline};
use crate::model::Model;
use crate::rwkv::WkvMode;

/// Scores of `model` on every piece of `data`, in eval mode (no dropout, running statistics);
/// `silent_start` as the model was trained ([`crate::config::TrainConfig::silent_start`]).
pub fn evaluate(
    model: &Model,
    data: &SplitData,
    batch_size: usize,
    silent_start: bool,
    device: Device,
) -> Scores {
    let mut totals = Totals::default();
    tch::no_grad(|| {
        for indices in plan_batches(&data.rolls, batch_size, None) {
            let rolls: Vec<_> = indices.iter().map(|&i| &data.rolls[i]).collect();
            let batch = Batch::new(&rolls, silent_start, device);
            let state = model.zero_state(rolls.len() as i64, device);
            let (rows, _) = model.forward(&batch.inputs, Some(&batch.mask), &state, false);
            let logits = model.head.logits(&rows, &batch.targets);
            let width = *rows.size().last().expect("rows");
            let predicted = model
                .head
                .predict(&rows.reshape([-1, width]))
                .reshape_as(&batch.targets);
            totals.add(
                &logits,
                &predicted,
                &batch.targets,
                &batch.scored(silent_start),
            );
        }
    });
    totals.scores()
}

/// What `trainer eval` reports.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub checkpoint: PathBuf,
    pub dataset: PathBuf,
    pub split: &'static str,
    pub scores: Scores,
    pub key_rate_baseline_nll: f64,
    /// With `--music`: the samples' music statistics against the split's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub music: Option<MusicReport>,
}

/// How `trainer eval --music` samples: `pieces` pieces of `frames` frames each, seeds
/// `0..pieces`, temperature 1, no primer (the model starts from a silent frame), as `trainer
/// sample` and the server would play them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MusicOptions {
    pub pieces: usize,
    pub frames: usize,
}

impl Default for MusicOptions {
    fn default() -> MusicOptions {
        MusicOptions {
            pieces: 12,
            frames: 256,
        }
    }
}

/// The music statistics of a model's samples (`samples`) and of the scored split
/// (`reference`), and the distance between their pitch-class sets.
#[derive(Clone, Debug, Serialize)]
pub struct MusicReport {
    pub sampled: MusicOptions,
    pub temperature: f32,
    #[serde(flatten)]
    pub comparison: MusicComparison,
}

/// `options.pieces` pieces sampled from `model` (see [`MusicOptions`]), trained with
/// `silent_start` or without.
pub fn sample_pieces(
    model: &Model,
    silent_start: bool,
    options: MusicOptions,
    temperature: f32,
    device: Device,
) -> Result<Vec<PianoRoll>> {
    (0..options.pieces as u64)
        .map(|seed| {
            crate::sample::generate(
                model,
                silent_start,
                &[],
                options.frames,
                temperature,
                seed,
                device,
            )
        })
        .collect()
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} {}: NLL {:.3} nats/frame, BCE {:.4} per key, frame accuracy {:.3} over {} predicted frames (constant key-rate baseline {:.3})",
            self.checkpoint.display(),
            self.dataset.display(),
            self.split,
            self.scores.nll_per_frame,
            self.scores.bce_per_pitch,
            self.scores.frame_accuracy,
            self.scores.frames,
            self.key_rate_baseline_nll
        )?;
        if let Some(music) = &self.music {
            write!(
                f,
                "\n\nmusic: {} samples of {} frames (seeds 0..{}, temperature {}, no primer) against the {} split\n{}",
                music.sampled.pieces,
                music.sampled.frames,
                music.sampled.pieces,
                music.temperature,
                self.split,
                music.comparison.table("samples", self.split)
            )?;
        }
        Ok(())
    }
}

/// Score `checkpoint` (a run folder or a weights file in one) on `split` of `data`, by default
/// the dataset the run trained on; it must be on the run's grid.
pub fn evaluate_checkpoint(
    checkpoint: &Path,
    split: Split,
    data: Option<&Path>,
    device: Device,
    wkv: WkvMode,
) -> Result<EvalReport> {
    evaluate_checkpoint_with_music(checkpoint, split, data, device, wkv, None)
}

/// [`evaluate_checkpoint`], and with `music` the music statistics of the model's samples
/// against the same split.
pub fn evaluate_checkpoint_with_music(
    checkpoint: &Path,
    split: Split,
    data: Option<&Path>,
    device: Device,
    wkv: WkvMode,
    music: Option<MusicOptions>,
) -> Result<EvalReport> {
    let mut loaded = crate::run::load(checkpoint, device)?;
    loaded.model.set_wkv(wkv);
    let config = &loaded.config;
    let dataset = match data {
        Some(data) => data.to_owned(),
        None => loaded
            .run
            .dataset()
            .context("the run's dataset (--data gives another)")?,
    };
    let load = |split| {
        SplitData::load(&dataset, split, Some(&config.roll_settings)).with_context(|| match data {
            Some(data) => format!("--data {}", data.display()),
            None => format!(
                "the run's dataset {} (from its config.json; --data names another)",
                dataset.display()
            ),
        })
    };
    let scored = load(split)?;
    let train_rolls = load(Split::Train)?.rolls;
    let music = match music {
        Some(options) => {
            const TEMPERATURE: f32 = 1.0;
            let samples = sample_pieces(
                &loaded.model,
                config.silent_start,
                options,
                TEMPERATURE,
                device,
            )?;
            Some(MusicReport {
                sampled: options,
                temperature: TEMPERATURE,
                comparison: MusicComparison::new(
                    &MusicCounts::of(&samples),
                    &MusicCounts::of(&scored.rolls),
                ),
            })
        }
        None => None,
    };
    Ok(EvalReport {
        checkpoint: checkpoint.to_owned(),
        dataset,
        split: split.as_str(),
        scores: evaluate(
            &loaded.model,
            &scored,
            config.batch_size,
            config.silent_start,
            device,
        ),
        key_rate_baseline_nll: key_rate_baseline(&train_rolls, &scored.rolls),
        music,
    })
}
