//! The two model families behind one interface: a parallel form over whole sequences (training,
//! scoring) and a recurrent one-step form with explicit state (generation, export), each
//! followed by an output head ([`crate::head`]: independent keys, or NADE).

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor, nn};

use crate::head::{Head, HeadConfig};
use crate::lstm::{Lstm, LstmConfig};
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

/// A next-frame model: a body, which turns frames into rows, and a head, which turns rows into
/// a distribution over the next frame (its logits, decisions and samples: [`Head`]).
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
        let head = Head::new(vs, config.head());
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
}

/// Trainable parameters in `vs`.
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}
