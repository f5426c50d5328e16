//! The LSTM next-frame model of the original project:
//! Linear(88→H) → BatchNorm → Dropout → L-layer LSTM(H) → BatchNorm → Dropout → Linear(H→88).
//!
//! BatchNorm in training sees only real frames: padding is dropped before the normalisation and
//! put back after it, so batch statistics do not depend on how much padding a batch has.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, RNN};
use tch::{Kind, Tensor};

use crate::model::State;
use pipeline::KEY_COUNT;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LstmConfig {
    pub hidden: i64,
    pub layers: i64,
    /// Dropout after the input BatchNorm.
    pub dropout_in: f64,
    /// Dropout after the output BatchNorm.
    pub dropout_out: f64,
}

impl LstmConfig {
    /// The original project's model: 512 × 2, dropout .25 / .1 (4.3 M parameters).
    pub fn original() -> LstmConfig {
        LstmConfig {
            hidden: 512,
            layers: 2,
            dropout_in: 0.25,
            dropout_out: 0.1,
        }
    }
}

#[derive(Debug)]
pub struct Lstm {
    config: LstmConfig,
    input: nn::Linear,
    norm_in: nn::BatchNorm,
    lstm: nn::LSTM,
    norm_out: nn::BatchNorm,
    output: nn::Linear,
}

impl Lstm {
    pub fn new(vs: &nn::Path, config: LstmConfig) -> Lstm {
        let keys = KEY_COUNT as i64;
        let h = config.hidden;
        Lstm {
            config,
            input: nn::linear(vs / "input", keys, h, Default::default()),
            norm_in: nn::batch_norm1d(vs / "norm_in", h, Default::default()),
            lstm: nn::lstm(
                vs / "lstm",
                h,
                h,
                nn::RNNConfig {
                    num_layers: config.layers,
                    batch_first: true,
                    ..Default::default()
                },
            ),
            norm_out: nn::batch_norm1d(vs / "norm_out", h, Default::default()),
            output: nn::linear(vs / "output", h, keys, Default::default()),
        }
    }

    pub fn zero_state(&self, batch: i64, device: tch::Device) -> State {
        let shape = [self.config.layers, batch, self.config.hidden];
        State(vec![
            Tensor::zeros(shape, (Kind::Float, device)),
            Tensor::zeros(shape, (Kind::Float, device)),
        ])
    }

    /// Linear → BatchNorm → Dropout on the rows selected by `rows` (all when `None`).
    fn per_frame(
        x: &Tensor,
        rows: Option<&Tensor>,
        layers: (&nn::Linear, &nn::BatchNorm),
        dropout: f64,
        train: bool,
        linear_first: bool,
    ) -> Tensor {
        let (b, t, d) = x.size3().expect("[batch, time, features]");
        let flat = x.reshape([b * t, d]);
        let selected = rows.map_or_else(|| flat.shallow_clone(), |r| flat.index_select(0, r));
        let y = if linear_first {
            let h = layers.0.forward(&selected);
            h.apply_t(layers.1, train).dropout(dropout, train)
        } else {
            let h = selected.apply_t(layers.1, train).dropout(dropout, train);
            layers.0.forward(&h)
        };
        let width = y.size()[1];
        match rows {
            None => y.reshape([b, t, width]),
            Some(r) => Tensor::zeros([b * t, width], (y.kind(), y.device()))
                .index_copy(0, r, &y)
                .reshape([b, t, width]),
        }
    }

    /// Parallel form: frames `x` [B, T, 88] from `state`; logits [B, T, 88] and the state after
    /// the last step. `mask` [B, T] marks real frames (BatchNorm statistics use only those).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        state: &State,
        train: bool,
    ) -> (Tensor, State) {
        let rows = mask.map(|m| m.reshape([-1]).nonzero().squeeze_dim(1));
        let h = Self::per_frame(
            x,
            rows.as_ref(),
            (&self.input, &self.norm_in),
            self.config.dropout_in,
            train,
            true,
        );
        let lstm_state = nn::LSTMState((state.0[0].shallow_clone(), state.0[1].shallow_clone()));
        let (out, nn::LSTMState((hn, cn))) = self.lstm.seq_init(&h, &lstm_state);
        let logits = Self::per_frame(
            &out,
            rows.as_ref(),
            (&self.output, &self.norm_out),
            self.config.dropout_out,
            train,
            false,
        );
        (logits, State(vec![hn, cn]))
    }

    /// Recurrent form, eval mode: one frame `x` [B, 88] → logits [B, 88] and the next state.
    pub fn step(&self, x: &Tensor, state: &State) -> (Tensor, State) {
        let (logits, state) = self.forward(&x.unsqueeze(1), None, state, false);
        (logits.squeeze_dim(1), state)
    }
}
