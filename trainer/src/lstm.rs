//! The LSTM next-frame model of the original project:
//! Linear(88→H) → BatchNorm → Dropout → L-layer LSTM(H) → BatchNorm → Dropout → Linear(H→88).
//!
//! BatchNorm in training sees only real frames: padding is dropped before the normalisation and
//! put back after it, so batch statistics do not depend on how much padding a batch has.
//!
//! Those statistics still span every frame of the batch, future frames included, so in training
//! each prediction sees a little of what comes after it; evaluation uses running statistics and
//! cannot. With batches of several pieces the leak is diluted; with one piece per batch the model
//! learns to lean on it and valid NLL rises while train NLL falls. `batch_norm: false` drops both
//! BatchNorms (a plain Linear → Dropout → LSTM → Dropout → Linear) for such runs.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::head::HeadConfig;
use crate::state::State;
use pianoroll::KEY_COUNT;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LstmConfig {
    pub hidden: i64,
    pub layers: i64,
    /// Dropout after the input BatchNorm.
    pub dropout_in: f64,
    /// Dropout after the output BatchNorm.
    pub dropout_out: f64,
    /// Dropout between stacked LSTM layers (on every layer's output but the last; PyTorch's
    /// `LSTM(dropout=...)`). Not in the original model, hence 0 there and in older configs.
    #[serde(default)]
    pub dropout_between: f64,
    /// BatchNorm after the input Linear and before the output Linear, as in the original model.
    /// Older configs have no field and had it.
    #[serde(default = "batch_norm_on")]
    pub batch_norm: bool,
    /// The output head ([`crate::head`]); configs without one have the Bernoulli head.
    #[serde(default)]
    pub head: HeadConfig,
}

fn batch_norm_on() -> bool {
    true
}

impl LstmConfig {
    /// The original project's model: 512 × 2, dropout .25 / .1 (4.3 M parameters).
    pub fn original() -> LstmConfig {
        LstmConfig {
            hidden: 512,
            layers: 2,
            dropout_in: 0.25,
            dropout_out: 0.1,
            dropout_between: 0.0,
            batch_norm: true,
            head: HeadConfig::Bernoulli,
        }
    }
}

#[derive(Debug)]
pub struct Lstm {
    config: LstmConfig,
    input: nn::Linear,
    norm_in: Option<nn::BatchNorm>,
    /// The stacked LSTM's weights in libtorch's order (w_ih, w_hh, b_ih, b_hh per layer), so
    /// that the forward pass can switch the between-layer dropout on and off; `nn::LSTM` fixes
    /// its training flag when it is built.
    lstm_weights: Vec<Tensor>,
    norm_out: Option<nn::BatchNorm>,
    output: nn::Linear,
}

impl Lstm {
    pub fn new(vs: &nn::Path, config: LstmConfig) -> Lstm {
        let keys = KEY_COUNT as i64;
        let h = config.hidden;
        // Variables are created in the model's order, so a seed gives the same start as ever.
        let input = nn::linear(vs / "input", keys, h, Default::default());
        let batch_norm = |name: &str| {
            config
                .batch_norm
                .then(|| nn::batch_norm1d(vs / name, h, Default::default()))
        };
        let norm_in = batch_norm("norm_in");
        // Creates the LSTM's variables (tch's names and initialisation); kept by name below.
        nn::lstm(
            vs / "lstm",
            h,
            h,
            nn::RNNConfig {
                num_layers: config.layers,
                batch_first: true,
                ..Default::default()
            },
        );
        let lstm_vars = vs / "lstm";
        let lstm_weights = (0..config.layers)
            .flat_map(|l| {
                ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map(|w| format!("{w}_l{l}"))
            })
            .map(|name| lstm_vars.get(&name).expect("nn::lstm created it"))
            .collect();
        Lstm {
            config,
            input,
            norm_in,
            lstm_weights,
            norm_out: batch_norm("norm_out"),
            output: nn::linear(
                vs / "output",
                h,
                config.head.input_width(),
                Default::default(),
            ),
        }
    }

    /// The output Linear's bias, for [`crate::model::Model::set_output_bias`].
    pub(crate) fn output_bias(&self) -> &Tensor {
        self.output
            .bs
            .as_ref()
            .expect("the output layer has a bias")
    }

    pub fn zero_state(&self, batch: i64, device: tch::Device) -> State {
        let shape = [self.config.layers, batch, self.config.hidden];
        State(vec![
            Tensor::zeros(shape, (Kind::Float, device)),
            Tensor::zeros(shape, (Kind::Float, device)),
        ])
    }

    /// Linear → BatchNorm → Dropout on the rows selected by `rows` (all when `None`), or
    /// BatchNorm → Dropout → Linear when not `linear_first`; no BatchNorm when it is `None`.
    fn per_frame(
        x: &Tensor,
        rows: Option<&Tensor>,
        layers: (&nn::Linear, Option<&nn::BatchNorm>),
        dropout: f64,
        train: bool,
        linear_first: bool,
    ) -> Tensor {
        let (b, t, d) = x.size3().expect("[batch, time, features]");
        let flat = x.reshape([b * t, d]);
        let selected = rows.map_or_else(|| flat.shallow_clone(), |r| flat.index_select(0, r));
        let norm = |h: Tensor| match layers.1 {
            Some(norm) => h.apply_t(norm, train),
            None => h,
        };
        let y = if linear_first {
            norm(layers.0.forward(&selected)).dropout(dropout, train)
        } else {
            layers.0.forward(&norm(selected).dropout(dropout, train))
        };
        let width = y.size()[1];
        match rows {
            None => y.reshape([b, t, width]),
            Some(r) => Tensor::zeros([b * t, width], (y.kind(), y.device()))
                .index_copy(0, r, &y)
                .reshape([b, t, width]),
        }
    }

    /// Parallel form: frames `x` [B, T, 88] from `state`; the head's input rows [B, T, width]
    /// (the logits for the Bernoulli head) and the state after the last step. `mask` [B, T] marks real frames (BatchNorm statistics use only those).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        state: &State,
        train: bool,
    ) -> (Tensor, State) {
        // Rows only matter to BatchNorm's statistics; without it padding is left to the loss mask.
        let rows = mask
            .filter(|_| self.config.batch_norm)
            .map(|m| m.reshape([-1]).nonzero().squeeze_dim(1));
        let h = Self::per_frame(
            x,
            rows.as_ref(),
            (&self.input, self.norm_in.as_ref()),
            self.config.dropout_in,
            train,
            true,
        );
        let weights: Vec<&Tensor> = self.lstm_weights.iter().collect();
        let (out, hn, cn) = h.lstm(
            &[&state.0[0], &state.0[1]],
            &weights,
            true,
            self.config.layers,
            self.config.dropout_between,
            train,
            false,
            true,
        );
        let logits = Self::per_frame(
            &out,
            rows.as_ref(),
            (&self.output, self.norm_out.as_ref()),
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

/// `scale` and `shift` of an eval-mode BatchNorm, `y = x·scale + shift`, computed in f64
/// (1 and 0 without one).
fn batch_norm_affine(norm: Option<&nn::BatchNorm>, width: i64) -> (Tensor, Tensor) {
    let Some(norm) = norm else {
        let identity = |value: f64| Tensor::full([width], value, (Kind::Double, tch::Device::Cpu));
        return (identity(1.0), identity(0.0));
    };
    let f64_of = |t: &Tensor| t.detach().to_kind(Kind::Double);
    let gamma = f64_of(norm.ws.as_ref().expect("affine BatchNorm"));
    let beta = f64_of(norm.bs.as_ref().expect("affine BatchNorm"));
    let scale = gamma / (f64_of(&norm.running_var) + crate::onnx::NORM_EPS).sqrt();
    let shift = beta - f64_of(&norm.running_mean) * &scale;
    (scale, shift)
}

impl Lstm {
    /// The recurrent step as an ONNX graph (eval mode: dropout gone, each BatchNorm folded into
    /// its neighbouring Linear). State per layer `l`: `lstm{l}.h` and `lstm{l}.c`, [batch, H].
    /// `variables` are the VarStore's, for the LSTM's own weights.
    pub fn onnx_step(
        &self,
        graph: &mut crate::onnx::StepGraph,
        variables: &std::collections::HashMap<String, Tensor>,
    ) -> String {
        use crate::onnx::Attr;
        let f64_of = |t: &Tensor| t.detach().to_kind(Kind::Double);
        // Linear then BatchNorm: scale the rows of W and the bias.
        let (scale, shift) = batch_norm_affine(self.norm_in.as_ref(), self.config.hidden);
        let w = f64_of(&self.input.ws) * scale.unsqueeze(1);
        let b = f64_of(self.input.bs.as_ref().expect("bias")) * &scale + shift;
        let mut x = graph.linear(proto::card::FRAME_INPUT, &w, Some(&b), "input");

        let h = self.config.hidden;
        for layer in 0..self.config.layers {
            let weight = |name: &str| {
                variables
                    .get(&format!("lstm.{name}_l{layer}"))
                    .unwrap_or_else(|| panic!("LSTM variable {name}_l{layer}"))
            };
            let prefix = format!("lstm{layer}");
            let h_in = graph.state_input(&format!("{prefix}.h"), h, 0.0, "LSTM hidden state");
            let c_in = graph.state_input(&format!("{prefix}.c"), h, 0.0, "LSTM cell state");
            // gates = x·W_ihᵀ + (b_ih + b_hh) + h·W_hhᵀ, in torch's order i, f, g, o.
            let from_input = graph.linear(
                &x,
                weight("weight_ih"),
                Some(&(weight("bias_ih") + weight("bias_hh"))),
                &format!("{prefix}.gates_from_input"),
            );
            let w_hh = graph.constant(&format!("{prefix}.weight_hh"), weight("weight_hh"));
            let gates = graph.node(
                "Gemm",
                &[&h_in, &w_hh, &from_input],
                &format!("{prefix}.gates"),
                &[Attr::Int("transB", 1)],
            );
            let names = ["input_gate", "forget_gate", "cell_candidate", "output_gate"]
                .map(|g| format!("{prefix}.{g}_preactivation"));
            let names_ref = names.each_ref().map(String::as_str);
            graph.node_n("Split", &[&gates], &names_ref, &[Attr::Int("axis", 1)]);
            let i = graph.node(
                "Sigmoid",
                &[&names[0]],
                &format!("{prefix}.input_gate"),
                &[],
            );
            let f = graph.node(
                "Sigmoid",
                &[&names[1]],
                &format!("{prefix}.forget_gate"),
                &[],
            );
            let g = graph.node(
                "Tanh",
                &[&names[2]],
                &format!("{prefix}.cell_candidate"),
                &[],
            );
            let o = graph.node(
                "Sigmoid",
                &[&names[3]],
                &format!("{prefix}.output_gate"),
                &[],
            );
            let kept = graph.node("Mul", &[&f, &c_in], &format!("{prefix}.kept"), &[]);
            let added = graph.node("Mul", &[&i, &g], &format!("{prefix}.added"), &[]);
            let c = graph.node("Add", &[&kept, &added], &format!("{prefix}.cell"), &[]);
            let c_tanh = graph.node("Tanh", &[&c], &format!("{prefix}.cell_tanh"), &[]);
            x = graph.node("Mul", &[&o, &c_tanh], &format!("{prefix}.hidden"), &[]);
            graph.state_output(&h_in, &x);
            graph.state_output(&c_in, &c);
        }

        // BatchNorm then Linear: scale the columns of W, move the shift into the bias.
        let (scale, shift) = batch_norm_affine(self.norm_out.as_ref(), self.config.hidden);
        let w_out = f64_of(&self.output.ws);
        let b = f64_of(self.output.bs.as_ref().expect("bias")) + w_out.matmul(&shift);
        let w = w_out * scale.unsqueeze(0);
        graph.linear(&x, &w, Some(&b), "output")
    }
}
