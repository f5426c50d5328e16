//! The two model families behind one interface: a parallel form over whole sequences (training,
//! scoring) and a recurrent one-step form with explicit state (generation, export), each
//! followed by an output head (independent keys, or NADE: [`crate::nade`]).

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor, nn};

use crate::lstm::{Lstm, LstmConfig};
use crate::nade::{HeadConfig, Nade};
use crate::onnx::{HeadOutputs, StepGraph};
use crate::rwkv::{Rwkv, RwkvConfig, WkvMode};
use crate::state::State;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    Lstm(LstmConfig),
    Rwkv(RwkvConfig),
}

/// The model families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Lstm,
    Rwkv,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Lstm => "lstm",
            ModelKind::Rwkv => "rwkv",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ModelConfig {
    /// The family's name as run folders and model cards write it: "lstm" or "rwkv".
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Lstm(_) => ModelKind::Lstm.as_str(),
            ModelConfig::Rwkv(_) => ModelKind::Rwkv.as_str(),
        }
    }
}

impl ModelConfig {
    /// The output head the configuration asks for.
    pub fn head(&self) -> HeadConfig {
        match self {
            ModelConfig::Lstm(c) => c.head,
            ModelConfig::Rwkv(c) => c.head,
        }
    }
}

/// A model family's network: frames in, the head's input rows out.
#[derive(Debug)]
pub enum Body {
    Lstm(Lstm),
    Rwkv(Rwkv),
}

/// The distribution over the next frame's keys that the body's output rows parameterise.
#[derive(Debug)]
pub enum Head {
    /// 88 independent keys: the rows are the logits.
    Bernoulli,
    /// Keys decided lowest first, each given those below ([`crate::nade`]).
    Nade(Nade),
}

/// A next-frame model: a body and a head.
#[derive(Debug)]
pub struct Model {
    pub body: Body,
    pub head: Head,
}

impl Model {
    /// Build the model's variables under `vs` (fresh initialisation; load a checkpoint after).
    /// RWKV's parallel form computes WKV as one scan; see [`Model::set_wkv`].
    pub fn new(vs: &nn::Path, config: &ModelConfig) -> Model {
        // The body's variables first, so a seed gives a Bernoulli model the same start as ever.
        let body = match *config {
            ModelConfig::Lstm(c) => Body::Lstm(Lstm::new(vs, c)),
            ModelConfig::Rwkv(c) => Body::Rwkv(Rwkv::new(vs, c)),
        };
        let head = match config.head() {
            HeadConfig::Bernoulli => Head::Bernoulli,
            HeadConfig::Nade { hidden } => Head::Nade(Nade::new(&(vs / "nade"), hidden)),
        };
        Model { body, head }
    }

    /// Start the output layer at each key's prior: the bias of each key's logit (the first 88
    /// of the body's output bias, for either head) becomes the log-odds of `rates` (one per
    /// key, in (0, 1)). Randomly initialised, the logits start near 0, i.e. every key on with
    /// probability ½, about 61 nats per frame where the data needs 3–16; learning the bias down
    /// to about −3 one small Adam step at a time would cost the first epochs.
    pub fn set_output_bias(&self, rates: &[f64]) {
        let bias = match &self.body {
            Body::Lstm(m) => m.output_bias(),
            Body::Rwkv(m) => m.output_bias(),
        };
        let log_odds: Vec<f32> = rates.iter().map(|&p| (p / (1.0 - p)).ln() as f32).collect();
        let values = Tensor::from_slice(&log_odds).to_device(bias.device());
        let mut keys = bias.narrow(0, 0, values.size()[0]);
        tch::no_grad(|| keys.copy_(&values));
    }

    /// How RWKV's parallel form evaluates WKV (a speed choice; the LSTM has no such choice).
    pub fn set_wkv(&mut self, mode: WkvMode) {
        if let Body::Rwkv(m) = &mut self.body {
            m.wkv = mode;
        }
    }

    pub fn zero_state(&self, batch: i64, device: Device) -> State {
        match &self.body {
            Body::Lstm(m) => m.zero_state(batch, device),
            Body::Rwkv(m) => m.zero_state(batch, device),
        }
    }

    /// Parallel form: `x` [B, T, 88] from `state` → the head's input rows [B, T, width] (for
    /// the Bernoulli head, the logits) and the final state. `mask` [B, T] marks real
    /// (non-padding) frames; `train` switches dropout and batch statistics on.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        state: &State,
        train: bool,
    ) -> (Tensor, State) {
        match &self.body {
            Body::Lstm(m) => m.forward(x, mask, state, train),
            Body::Rwkv(m) => m.forward(x, state, m.wkv, train),
        }
    }

    /// Recurrent form, eval mode: one frame [B, 88] → the head's input rows [B, width] and the
    /// next state.
    pub fn step(&self, x: &Tensor, state: &State) -> (Tensor, State) {
        match &self.body {
            Body::Lstm(m) => m.step(x, state),
            Body::Rwkv(m) => m.step(x, state),
        }
    }

    /// The logit of each key of `frames` [.., 88] under the head, given output rows `rows`
    /// [.., width]: for NADE each key's logit given the keys below it in the frame (teacher
    /// forcing). The Bernoulli log-likelihood of `frames` under them is the model's.
    pub fn logits(&self, rows: &Tensor, frames: &Tensor) -> Tensor {
        match &self.head {
            Head::Bernoulli => rows.shallow_clone(),
            Head::Nade(nade) => nade.conditional_logits(rows, frames),
        }
    }

    /// The frame the model predicts from rows [N, width]: each key on when its probability is
    /// above ½, for NADE given the keys decided below it.
    pub fn predict(&self, rows: &Tensor) -> Tensor {
        match &self.head {
            Head::Bernoulli => rows.gt(0.0).to_kind(Kind::Float),
            Head::Nade(nade) => nade.unroll(rows, |_, logit| logit.gt(0.0)).0,
        }
    }

    /// The next frame sampled from rows [N, width]: key k is on when `uniform` [N, 88] is below
    /// its probability `sigmoid(logit / temperature)` (`temperature` [N, 1]), for NADE given the
    /// keys decided below it. The comparison is made in logit space, `logit > temperature ·
    /// (ln u − ln(1 − u))`, with the arithmetic of the exported step graph
    /// ([`StepGraph::sampling_thresholds`]), so the same uniforms give the same music in tch and
    /// ONNX Runtime.
    pub fn sample(&self, rows: &Tensor, temperature: &Tensor, uniform: &Tensor) -> Sampled {
        let thresholds = (uniform.log() - (uniform.ones_like() - uniform).log()) * temperature;
        let (frame, logits) = match &self.head {
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
}

/// A sampled frame and what it was drawn with (rows of [N, 88]).
#[derive(Debug)]
pub struct Sampled {
    pub frame: Tensor,
    pub probabilities: Tensor,
    pub logits: Tensor,
}

impl Head {
    /// The head's sampling as ONNX, from the body's output rows `rows` [batch, width] and the
    /// graph's `uniform` and `temperature` inputs (the rule of [`Model::sample`]).
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

/// Trainable parameters in `vs`.
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}
