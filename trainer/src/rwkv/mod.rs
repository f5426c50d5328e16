//! RWKV-4 as a next-frame model: the token embedding is replaced by Linear(88→C).
//!
//! ```text
//! x = ln0(Linear(frame))
//! per block:  x = x + TimeMix(ln1(x));  x = x + ChannelMix(ln2(x))
//! logits = head(ln_out(x))
//! ```
//! The head has a bias (RWKV-4's has none): with 88 independent sigmoids it holds each key's
//! prior log-odds, set from the training data when a run starts
//! ([`crate::model::Model::set_output_bias`]).
//! TimeMix: token shift, `time_mix_{k,v,r}`, key/value/receptance/output and the WKV operator
//! with per-channel `time_decay` (w = exp(time_decay) > 0) and `time_first` (u):
//!
//! ```text
//! wkv_t = (Σ_{i<t} e^{k_i − (t−1−i)w} v_i + e^{u+k_t} v_t) / (Σ_{i<t} e^{k_i − (t−1−i)w} + e^{u+k_t})
//! ```
//! ChannelMix: token shift, squared ReLU, receptance gate. Initialisation follows RWKV-4
//! (RWKV-LM `RWKV-v4/src/model.py`).
//!
//! Two forms compute the same thing. The recurrent step carries, per layer, the last inputs of
//! both token shifts and the WKV state `(a, b, p)`: the past numerator and denominator scaled
//! by `e^{-p}`, `p` being the running maximum exponent, so nothing overflows. The parallel form
//! for training and scoring computes WKV over the whole sequence at once (by default one scan,
//! [`WkvMode::Scan`]; the forms are in [`wkv`]), so the number of kernels per layer grows with
//! the logarithm of the piece's length, not with the length.
//!
//! Files: this one holds the config and the model; [`wkv`] the WKV operator in its four forms;
//! `onnx.rs` the recurrent step as an ONNX graph ([`Rwkv::onnx_step`]).

mod onnx;
pub mod wkv;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use crate::head::HeadConfig;
use crate::state::State;
use pianoroll::KEY_COUNT;
use wkv::{EMPTY_P, WkvState};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RwkvConfig {
    pub layers: i64,
    pub embd: i64,
    /// ChannelMix hidden width as a multiple of `embd` (4 in RWKV-4).
    pub ffn_mult: i64,
    /// Dropout on the output of each block's time-mix and channel-mix before it joins the
    /// residual stream, in training only (RWKV-LM's `dropout`; 0 turns it off).
    #[serde(default)]
    pub dropout: f64,
    /// Dropout on the embedded input frame (after ln0), in training only: the LSTM's
    /// `dropout_in` at the same place, so that both families can be regularised alike.
    #[serde(default)]
    pub dropout_in: f64,
    /// The output head ([`crate::head`]); configs without one have the Bernoulli head.
    #[serde(default)]
    pub head: HeadConfig,
}

impl RwkvConfig {
    /// The original project's model: 6 layers, n_embd 512 (20.6 M parameters).
    pub fn original() -> RwkvConfig {
        RwkvConfig {
            layers: 6,
            embd: 512,
            ffn_mult: 4,
            dropout: 0.0,
            dropout_in: 0.0,
            head: HeadConfig::Bernoulli,
        }
    }
}

/// How the parallel form evaluates WKV: a speed choice, not part of the model (every form
/// computes the same values up to rounding; `tests/agreement.rs` checks it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WkvMode {
    /// Over the whole sequence at once ([`wkv::scan`]): the fastest on CPU at any batch size
    /// (BENCHMARKS.md).
    #[default]
    Scan,
    /// Chunks of this many steps, each a masked softmax ([`wkv::chunk`]).
    Chunked(i64),
    /// One small kernel sequence per time step, like the recurrent form ([`wkv::step`]).
    Loop,
}

impl WkvMode {
    /// The mode `--wkv-chunk L` names: 0 for the scan, else chunks of `L`.
    pub fn from_chunk(chunk: i64) -> Option<WkvMode> {
        match chunk {
            0 => Some(WkvMode::Scan),
            l if l > 0 => Some(WkvMode::Chunked(l)),
            _ => None,
        }
    }
}

fn linear(vs: nn::Path, input: i64, output: i64, scale: f64) -> nn::Linear {
    // RWKV_Init: orthogonal with gain sqrt(out/in) when out > in, times a per-layer scale; zero
    // for the layers whose scale is 0 (they start as identity residual blocks).
    let gain = if output > input {
        (output as f64 / input as f64).sqrt()
    } else {
        1.0
    } * scale;
    let ws_init = if gain == 0.0 {
        Init::Const(0.0)
    } else {
        Init::Orthogonal { gain }
    };
    nn::linear(
        vs,
        input,
        output,
        nn::LinearConfig {
            ws_init,
            bs_init: None,
            bias: false,
        },
    )
}

fn channel_ramp(embd: i64, exponent: f64) -> Vec<f32> {
    (0..embd)
        .map(|i| (i as f64 / embd as f64).powf(exponent) as f32)
        .collect()
}

#[derive(Debug)]
struct TimeMix {
    time_decay: Tensor,
    time_first: Tensor,
    mix_k: Tensor,
    mix_v: Tensor,
    mix_r: Tensor,
    key: nn::Linear,
    value: nn::Linear,
    receptance: nn::Linear,
    output: nn::Linear,
}

#[derive(Debug)]
struct ChannelMix {
    mix_k: Tensor,
    mix_r: Tensor,
    key: nn::Linear,
    receptance: nn::Linear,
    value: nn::Linear,
}

#[derive(Debug)]
struct Block {
    ln1: nn::LayerNorm,
    ln2: nn::LayerNorm,
    att: TimeMix,
    ffn: ChannelMix,
}

fn param(vs: &nn::Path, name: &str, values: Vec<f32>) -> Tensor {
    vs.var_copy(name, &Tensor::from_slice(&values))
}

impl Block {
    fn new(vs: &nn::Path, config: &RwkvConfig, layer: i64) -> Block {
        let c = config.embd;
        let ratio_0_to_1 = if config.layers > 1 {
            layer as f64 / (config.layers - 1) as f64
        } else {
            0.0
        };
        let ratio_1_to_almost_0 = 1.0 - layer as f64 / config.layers as f64;
        let att_vs = vs / "att";
        let decay: Vec<f32> = (0..c)
            .map(|h| {
                let x = h as f64 / (c - 1).max(1) as f64;
                (-5.0 + 8.0 * x.powf(0.7 + 1.3 * ratio_0_to_1)) as f32
            })
            .collect();
        let first: Vec<f32> = (0..c)
            .map(|i| (0.3f64.ln() + ((i + 1) % 3 - 1) as f64 * 0.5) as f32)
            .collect();
        let mix_v: Vec<f32> = channel_ramp(c, ratio_1_to_almost_0)
            .into_iter()
            .map(|x| x + 0.3 * ratio_0_to_1 as f32)
            .collect();
        let att = TimeMix {
            time_decay: param(&att_vs, "time_decay", decay),
            time_first: param(&att_vs, "time_first", first),
            mix_k: param(&att_vs, "time_mix_k", channel_ramp(c, ratio_1_to_almost_0)),
            mix_v: param(&att_vs, "time_mix_v", mix_v),
            mix_r: param(
                &att_vs,
                "time_mix_r",
                channel_ramp(c, 0.5 * ratio_1_to_almost_0),
            ),
            key: linear(&att_vs / "key", c, c, 0.0),
            value: linear(&att_vs / "value", c, c, 1.0),
            receptance: linear(&att_vs / "receptance", c, c, 0.0),
            output: linear(&att_vs / "output", c, c, 0.0),
        };
        let ffn_vs = vs / "ffn";
        let hidden = config.ffn_mult * c;
        let ffn = ChannelMix {
            mix_k: param(&ffn_vs, "time_mix_k", channel_ramp(c, ratio_1_to_almost_0)),
            mix_r: param(&ffn_vs, "time_mix_r", channel_ramp(c, ratio_1_to_almost_0)),
            key: linear(&ffn_vs / "key", c, hidden, 1.0),
            receptance: linear(&ffn_vs / "receptance", c, c, 0.0),
            value: linear(&ffn_vs / "value", hidden, c, 0.0),
        };
        Block {
            ln1: nn::layer_norm(vs / "ln1", vec![c], Default::default()),
            ln2: nn::layer_norm(vs / "ln2", vec![c], Default::default()),
            att,
            ffn,
        }
    }
}

/// Mix each position with the previous one: `x·mix + shifted·(1 − mix)`.
fn mix(x: &Tensor, shifted: &Tensor, mix: &Tensor) -> Tensor {
    x * mix + shifted * (1.0 - mix)
}

/// `x` [B, T, C] shifted one step later in time, `previous` [B, C] filling the first step.
fn token_shift(x: &Tensor, previous: &Tensor) -> Tensor {
    let t = x.size()[1];
    Tensor::cat(&[previous.unsqueeze(1), x.narrow(1, 0, t - 1)], 1)
}

#[derive(Debug)]
pub struct Rwkv {
    config: RwkvConfig,
    /// How [`Model::forward`](crate::model::Model::forward) evaluates WKV.
    pub wkv: WkvMode,
    input: nn::Linear,
    ln0: nn::LayerNorm,
    blocks: Vec<Block>,
    ln_out: nn::LayerNorm,
    head: nn::Linear,
}

/// Per-layer state tensors in [`State`] order; each is stacked over layers to [L, B, C].
pub const STATE_NAMES: [&str; 5] = ["att_x", "att_a", "att_b", "att_p", "ffn_x"];

impl Rwkv {
    pub fn new(vs: &nn::Path, config: RwkvConfig) -> Rwkv {
        let keys = KEY_COUNT as i64;
        let c = config.embd;
        // RWKV-4 initialises the token embedding at ±1e-4; ln0 rescales what comes out.
        let input = nn::linear(
            vs / "input",
            keys,
            c,
            nn::LinearConfig {
                ws_init: Init::Uniform {
                    lo: -1e-4,
                    up: 1e-4,
                },
                bs_init: Some(Init::Const(0.0)),
                bias: true,
            },
        );
        Rwkv {
            config,
            wkv: WkvMode::default(),
            input,
            ln0: nn::layer_norm(vs / "ln0", vec![c], Default::default()),
            blocks: (0..config.layers)
                .map(|layer| Block::new(&(vs / "blocks" / layer), &config, layer))
                .collect(),
            ln_out: nn::layer_norm(vs / "ln_out", vec![c], Default::default()),
            head: {
                let width = config.head.input_width();
                let mut head = linear(vs / "head", c, width, 0.5);
                head.bs = Some((vs / "head").zeros("bias", &[width]));
                head
            },
        }
    }

    /// The head's bias, for [`crate::model::Model::set_output_bias`].
    pub(crate) fn output_bias(&self) -> &Tensor {
        self.head.bs.as_ref().expect("the head has a bias")
    }

    pub fn zero_state(&self, batch: i64, device: tch::Device) -> State {
        let shape = [self.config.layers, batch, self.config.embd];
        let zeros = || Tensor::zeros(shape, (Kind::Float, device));
        State(vec![
            zeros(),
            zeros(),
            zeros(),
            Tensor::full(shape, EMPTY_P, (Kind::Float, device)),
            zeros(),
        ])
    }

    /// Parallel form: `x` [B, T, 88] from `state`; logits [B, T, 88] and the state after the
    /// last step; `train` switches dropout on. (No BatchNorm, so padding needs no mask.)
    // `h = h + …` on purpose: Tensor's `+=` works in place, and autograd still needs the old `h`.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(
        &self,
        x: &Tensor,
        state: &State,
        mode: WkvMode,
        train: bool,
    ) -> (Tensor, State) {
        let dropout = self.config.dropout;
        let mut h = self
            .ln0
            .forward(&self.input.forward(x))
            .dropout(self.config.dropout_in, train);
        let mut next: Vec<Vec<Tensor>> = (0..STATE_NAMES.len()).map(|_| Vec::new()).collect();
        for (layer, block) in self.blocks.iter().enumerate() {
            let layer = layer as i64;
            let at = |i: usize| state.0[i].get(layer);

            let xa = block.ln1.forward(&h);
            let shifted = token_shift(&xa, &at(0));
            let att = &block.att;
            let k = att.key.forward(&mix(&xa, &shifted, &att.mix_k));
            let v = att.value.forward(&mix(&xa, &shifted, &att.mix_v));
            let r = att
                .receptance
                .forward(&mix(&xa, &shifted, &att.mix_r))
                .sigmoid();
            let w = att.time_decay.exp();
            let mut s = WkvState {
                a: at(1),
                b: at(2),
                p: at(3),
            };
            let t = x.size()[1];
            let mut outs = Vec::new();
            let chunk = match mode {
                WkvMode::Chunked(len) => len.max(1),
                WkvMode::Loop => 1,
                WkvMode::Scan => t,
            };
            let mut start = 0;
            while start < t {
                let len = chunk.min(t - start);
                let (kc, vc) = (k.narrow(1, start, len), v.narrow(1, start, len));
                let (out, s2) = match mode {
                    WkvMode::Chunked(_) => wkv::chunk(&w, &att.time_first, &kc, &vc, &s),
                    WkvMode::Scan => wkv::scan(&w, &att.time_first, &kc, &vc, &s),
                    WkvMode::Loop => {
                        let (o, s2) = wkv::step(
                            &w,
                            &att.time_first,
                            &kc.squeeze_dim(1),
                            &vc.squeeze_dim(1),
                            &s,
                        );
                        (o.unsqueeze(1), s2)
                    }
                };
                outs.push(out);
                s = s2;
                start += len;
            }
            let wkv = Tensor::cat(&outs, 1);
            h = h + att.output.forward(&(r * wkv)).dropout(dropout, train);

            let xf = block.ln2.forward(&h);
            let shifted_f = token_shift(&xf, &at(4));
            let ffn = &block.ffn;
            let key = ffn
                .key
                .forward(&mix(&xf, &shifted_f, &ffn.mix_k))
                .relu()
                .square();
            let gate = ffn
                .receptance
                .forward(&mix(&xf, &shifted_f, &ffn.mix_r))
                .sigmoid();
            h = h + (gate * ffn.value.forward(&key)).dropout(dropout, train);

            let last = |x: &Tensor| x.select(1, t - 1);
            next[0].push(last(&xa));
            next[1].push(s.a);
            next[2].push(s.b);
            next[3].push(s.p);
            next[4].push(last(&xf));
        }
        let logits = self.head.forward(&self.ln_out.forward(&h));
        (
            logits,
            State(next.iter().map(|layers| Tensor::stack(layers, 0)).collect()),
        )
    }

    /// Recurrent form: one frame `x` [B, 88] → logits [B, 88] and the next state.
    pub fn step(&self, x: &Tensor, state: &State) -> (Tensor, State) {
        let (logits, state) = self.forward(&x.unsqueeze(1), state, WkvMode::Loop, false);
        (logits.squeeze_dim(1), state)
    }
}
