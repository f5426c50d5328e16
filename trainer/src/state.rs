//! The recurrent state both model families carry from one step (or window) to the next.

use tch::Tensor;

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
