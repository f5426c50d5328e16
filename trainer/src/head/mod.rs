//! The output heads: what distribution a model puts over the 88 keys of the next frame, given
//! the rows its body computes. Everything that depends on the head is here: its configuration,
//! its likelihood, its decisions and sampling in tch, and its sampling as ONNX.
//!
//! - `bernoulli`: 88 independent keys; the body's output row is the 88 logits.
//! - `nade`: keys decided one after another, each given those decided before it in the frame,
//!   lowest first or highest first ([`KeyOrder`], [`nade`]).
//!
//! Both sample by one rule: key k is on when its uniform is below `sigmoid(logit / T)`,
//! compared in logit space as `logit > T · ln(u / (1 − u))`, with the arithmetic of the exported
//! step graph ([`StepGraph::sampling_thresholds`]), so the same uniforms give the same music in
//! tch and ONNX Runtime.

pub mod nade;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

use pianoroll::KEY_COUNT;

use crate::onnx::{HeadOutputs, StepGraph};
pub use nade::Nade;
/// The heads by name: one type for recipes, flags, model cards and [`HeadConfig::kind`].
pub use proto::card::HeadKind;

/// Which head a model has and its size (part of the body's saved configuration; `bernoulli`
/// when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeadConfig {
    #[default]
    Bernoulli,
    Nade {
        /// NADE hidden units.
        hidden: i64,
        /// Which key is decided first (lowest when absent, as before the choice existed).
        #[serde(default)]
        order: KeyOrder,
    },
}

/// The order in which the NADE head decides a frame's keys. Each key sees only the keys decided
/// before it in its frame, so the order matters when some keys are fixed: to harmonise a melody
/// on top, highest first lets the accompaniment see the melody note it sounds under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KeyOrder {
    /// MIDI 21 first, as in RNN-NADE.
    #[default]
    LowestFirst,
    /// MIDI 108 first.
    HighestFirst,
}

/// NADE hidden units when a recipe or the flags name none.
pub const DEFAULT_NADE_HIDDEN: i64 = 128;

impl HeadConfig {
    pub fn kind(&self) -> HeadKind {
        match self {
            HeadConfig::Bernoulli => HeadKind::Bernoulli,
            HeadConfig::Nade { .. } => HeadKind::Nade,
        }
    }

    /// Width of the body's output row that the head reads.
    pub fn input_width(&self) -> i64 {
        match self {
            HeadConfig::Bernoulli => KEY_COUNT as i64,
            HeadConfig::Nade { hidden, .. } => KEY_COUNT as i64 + hidden,
        }
    }
}

/// A model's head and its weights, if any.
#[derive(Debug)]
pub enum Head {
    /// 88 independent keys: the rows are the logits.
    Bernoulli,
    /// Keys decided one by one, each given those decided before ([`nade`]).
    Nade(Nade),
}

/// A sampled frame and what it was drawn with (rows of [N, 88]).
#[derive(Debug)]
pub struct Sampled {
    pub frame: Tensor,
    pub probabilities: Tensor,
    pub logits: Tensor,
}

impl Head {
    /// Build the head's variables under `vs` (NADE's under `vs / "nade"`, where checkpoints
    /// hold them).
    pub fn new(vs: &nn::Path, config: HeadConfig) -> Head {
        match config {
            HeadConfig::Bernoulli => Head::Bernoulli,
            HeadConfig::Nade { hidden, order } => {
                Head::Nade(Nade::new(&(vs / "nade"), hidden, order))
            }
        }
    }

    /// The logit of each key of `frames` [.., 88] under the head, given the body's output rows
    /// `rows` [.., width]: for NADE each key's logit given the keys below it in the frame
    /// (teacher forcing). The Bernoulli log-likelihood of `frames` under them is the model's.
    pub fn logits(&self, rows: &Tensor, frames: &Tensor) -> Tensor {
        match self {
            Head::Bernoulli => rows.shallow_clone(),
            Head::Nade(nade) => nade.conditional_logits(rows, frames),
        }
    }

    /// The frame the model predicts from rows [N, width]: each key on when its probability is
    /// above ½, for NADE given the keys decided below it.
    pub fn predict(&self, rows: &Tensor) -> Tensor {
        match self {
            Head::Bernoulli => rows.gt(0.0).to_kind(Kind::Float),
            Head::Nade(nade) => nade.unroll(rows, |_, logit| logit.gt(0.0)).0,
        }
    }

    /// The next frame sampled from rows [N, width] with `uniform` [N, 88] and `temperature`
    /// [N, 1], by the rule in the module documentation; for NADE each key given the keys
    /// decided below it.
    pub fn sample(&self, rows: &Tensor, temperature: &Tensor, uniform: &Tensor) -> Sampled {
        let thresholds = (uniform.log() - (uniform.ones_like() - uniform).log()) * temperature;
        let (frame, logits) = match self {
            Head::Bernoulli => {
                let on = rows.gt_tensor(&thresholds);
                (on.to_kind(Kind::Float), rows.shallow_clone())
            }
            Head::Nade(nade) => nade.unroll(rows, |i, logit| {
                logit.gt_tensor(&thresholds.select(1, i as i64))
            }),
        };
        Sampled {
            probabilities: (&logits / temperature).sigmoid(),
            frame,
            logits,
        }
    }

    /// [`Head::sample`] as ONNX, from the body's output rows `rows` [batch, width] and the
    /// graph's `uniform` and `temperature` inputs.
    pub fn onnx_sample(&self, graph: &mut StepGraph, rows: &str) -> HeadOutputs {
        match self {
            Head::Bernoulli => {
                let thresholds = graph.sampling_thresholds();
                HeadOutputs {
                    logits: rows.to_owned(),
                    probabilities: graph.probabilities(rows, "head"),
                    next_frame: graph.decide_keys(rows, &thresholds, "head"),
                }
            }
            Head::Nade(nade) => nade.onnx_sample(graph, rows),
        }
    }
}
