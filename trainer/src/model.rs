//! The two model families behind one interface: a parallel form over whole sequences (training,
//! scoring) and a recurrent one-step form with explicit state (generation, export).

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};

use crate::lstm::{Lstm, LstmConfig};
use crate::rwkv::{Rwkv, RwkvConfig};

/// Recurrent state as a list of tensors; which tensors, and their shapes, depend on the model
/// (LSTM: `h`, `c` as [layers, B, H]; RWKV: see [`crate::rwkv::STATE_NAMES`], each [layers, B, C]).
#[derive(Debug)]
pub struct State(pub Vec<Tensor>);

impl State {
    /// The same state cut off from the autograd graph (truncated backpropagation through time).
    pub fn detach(&self) -> State {
        State(self.0.iter().map(|t| t.detach()).collect())
    }

    /// The state as the exported ONNX step takes it: one [B, width] tensor per layer and kind,
    /// layer by layer (`lstm0.h`, `lstm0.c`, `lstm1.h`, …), the order of `model.json`.
    pub fn per_layer(&self) -> Vec<Tensor> {
        let layers = self.0.first().map_or(0, |t| t.size()[0]);
        (0..layers)
            .flat_map(|layer| self.0.iter().map(move |t| t.get(layer)))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    Lstm(LstmConfig),
    Rwkv(RwkvConfig),
}

impl ModelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Lstm(_) => "lstm",
            ModelConfig::Rwkv(_) => "rwkv",
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
            Model::Rwkv(m) => m.forward(x, state, m.parallel_mode(), train),
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
