//! Scoring a model on a split: during training (valid every epoch, test at the end) and for
//! `trainer eval` on any checkpoint and dataset on the run's grid.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pipeline::dataset::Split;
use serde::Serialize;
use tch::Device;

use crate::data::{Batch, SplitData, plan_batches};
use crate::metrics::{Scores, Totals, key_rate_baseline};
use crate::model::Model;
use crate::rwkv::WkvMode;

/// Scores of `model` on every piece of `data`, in eval mode (no dropout, running statistics).
pub fn evaluate(model: &Model, data: &SplitData, batch_size: usize, device: Device) -> Scores {
    let mut totals = Totals::default();
    tch::no_grad(|| {
        for indices in plan_batches(&data.rolls, batch_size, None) {
            let rolls: Vec<_> = indices.iter().map(|&i| &data.rolls[i]).collect();
            let batch = Batch::new(&rolls, device);
            let state = model.zero_state(rolls.len() as i64, device);
            let (rows, _) = model.forward(&batch.inputs, Some(&batch.mask), &state, false);
            let logits = model.head.logits(&rows, &batch.targets);
            let width = *rows.size().last().expect("rows");
            let predicted = model
                .head
                .predict(&rows.reshape([-1, width]))
                .reshape_as(&batch.targets);
            totals.add(&logits, &predicted, &batch.targets, &batch.mask);
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
        )
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
    Ok(EvalReport {
        checkpoint: checkpoint.to_owned(),
        dataset,
        split: split.as_str(),
        scores: evaluate(&loaded.model, &scored, config.batch_size, device),
        key_rate_baseline_nll: key_rate_baseline(&train_rolls, &scored.rolls),
    })
}
