//! The two model families behind one interface: a parallel form over whole sequences (training,
//! scoring) and a recurrent one-step form with explicit state (generation, export).

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor, nn};

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

#[derive(Debug)]
pub enum Model {
    Lstm(Lstm),
    Rwkv(Rwkv),
}

impl Model {
    /// Build the model's variables under `vs` (fresh initialisation; load a checkpoint after).
    /// RWKV's parallel form computes WKV as one scan; see [`Model::set_wkv`].
    pub fn new(vs: &nn::Path, config: &ModelConfig) -> Model {
        match *config {
            ModelConfig::Lstm(c) => Model::Lstm(Lstm::new(vs, c)),
            ModelConfig::Rwkv(c) => Model::Rwkv(Rwkv::new(vs, c)),
        }
    }

    /// Start the output layer at each key's prior: its bias becomes the log-odds of `rates`
    /// (one per key, in (0, 1)). Randomly initialised, the logits start near 0, i.e. every key
    /// on with probability ½, about 61 nats per frame where the data needs 3–16; learning the
    /// bias down to about −3 one small Adam step at a time wasted the first epochs.
    pub fn set_output_bias(&self, rates: &[f64]) {
        let bias = match self {
            Model::Lstm(m) => m.output_bias(),
            Model::Rwkv(m) => m.output_bias(),
        };
        let log_odds: Vec<f32> = rates.iter().map(|&p| (p / (1.0 - p)).ln() as f32).collect();
        let values = Tensor::from_slice(&log_odds).to_device(bias.device());
        let mut bias = bias.shallow_clone();
        tch::no_grad(|| bias.copy_(&values));
    }

    /// How RWKV's parallel form evaluates WKV (a speed choice; the LSTM has no such choice).
    pub fn set_wkv(&mut self, mode: WkvMode) {
        if let Model::Rwkv(m) = self {
            m.wkv = mode;
        }
    }

    pub fn zero_state(&self, batch: i64, device: Device) -> State {
        match self {
            Model::Lstm(m) => m.zero_state(batch, device),
            Model::Rwkv(m) => m.zero_state(batch, device),
        }
    }

    /// Parallel form: `x` [B, T, 88] from `state` → logits [B, T, 88] and the final state.
    /// `mask` [B, T] marks real (non-padding) frames; `train` switches dropout and batch
    /// statistics on.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        state: &State,
        train: bool,
    ) -> (Tensor, State) {
        match self {
            Model::Lstm(m) => m.forward(x, mask, state, train),
            Model::Rwkv(m) => m.forward(x, state, m.wkv, train),
        }
    }

    /// Recurrent form, eval mode: one frame [B, 88] → logits [B, 88] and the next state.
    pub fn step(&self, x: &Tensor, state: &State) -> (Tensor, State) {
        match self {
            Model::Lstm(m) => m.step(x, state),
            Model::Rwkv(m) => m.step(x, state),
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
