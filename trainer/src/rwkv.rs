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
//! for training and scoring computes WKV over the whole sequence at once ([`wkv_scan`]: one
//! prefix log-sum-exp, then a linear recurrence in log₂ T vectorised rounds), so the number of
//! kernels per layer grows with the logarithm of the piece's length, not with the length.
//! Two older parallel forms are kept to benchmark against and to test with: chunks (inside a
//! chunk every `wkv_t` is a masked softmax over the chunk's positions plus one virtual position
//! for the carried state, one batched matrix product; `--wkv-chunk L`) and a per-step loop of
//! small kernels (`WkvMode::Loop`).

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use crate::model::State;
use pipeline::KEY_COUNT;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RwkvConfig {
    pub layers: i64,
    pub embd: i64,
    /// ChannelMix hidden width as a multiple of `embd` (4 in RWKV-4).
    pub ffn_mult: i64,
    /// Time steps per WKV chunk in the parallel form; 0 for no chunks, one scan over the
    /// whole sequence (the default: fastest on CPU, BENCHMARKS.md).
    pub wkv_chunk: i64,
    /// Dropout on the output of each block's time-mix and channel-mix before it joins the
    /// residual stream, in training only (RWKV-LM's `dropout`; 0 turns it off).
    #[serde(default)]
    pub dropout: f64,
    /// Dropout on the embedded input frame (after ln0), in training only: the LSTM's
    /// `dropout_in` at the same place, so that both families can be regularised alike.
    #[serde(default)]
    pub dropout_in: f64,
}

impl RwkvConfig {
    /// The original project's model: 6 layers, n_embd 512 (20.6 M parameters).
    pub fn original() -> RwkvConfig {
        RwkvConfig {
            layers: 6,
            embd: 512,
            ffn_mult: 4,
            // The scan: on two CPU cores it trained pieces one at a time twice as fast as the
            // best chunk length (8), and tied it at 8 pieces a batch (BENCHMARKS.md).
            wkv_chunk: 0,
            dropout: 0.0,
            dropout_in: 0.0,
        }
    }
}

/// How the parallel form evaluates WKV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WkvMode {
    /// Chunked masked softmax.
    Chunked,
    /// One small kernel sequence per time step, like the recurrent form.
    Loop,
    /// Over the whole sequence at once (the default; [`wkv_scan`]).
    Scan,
}

/// Large negative stand-in for −∞ in masked exponents (finite, so no ∞ − ∞ = NaN).
const MASKED: f64 = -1e30;
/// Initial `p` of the WKV state: no past yet.
const EMPTY_P: f64 = -1e38;

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

/// The WKV state of one layer: past numerator `a`, denominator `b`, both scaled by `e^{-p}`.
struct WkvState {
    a: Tensor,
    b: Tensor,
    p: Tensor,
}

/// One recurrent WKV step (all [B, C]); `w` = exp(time_decay), `u` = time_first.
fn wkv_step(w: &Tensor, u: &Tensor, k: &Tensor, v: &Tensor, s: &WkvState) -> (Tensor, WkvState) {
    let ww = u + k;
    let p = s.p.maximum(&ww);
    let e1 = (&s.p - &p).exp();
    let e2 = (&ww - &p).exp();
    let wkv = (&e1 * &s.a + &e2 * v) / (&e1 * &s.b + &e2);
    let ww = &s.p - w;
    let p = ww.maximum(k);
    let e1 = (&ww - &p).exp();
    let e2 = (k - &p).exp();
    let next = WkvState {
        a: &e1 * &s.a + &e2 * v,
        b: &e1 * &s.b + &e2,
        p,
    };
    (wkv, next)
}

/// WKV over a chunk `k`, `v` [B, L, C] starting from `s`: outputs [B, L, C] and the state after
/// the chunk. Every output is a softmax-weighted mean over the chunk's positions and the state.
fn wkv_chunk(w: &Tensor, u: &Tensor, k: &Tensor, v: &Tensor, s: &WkvState) -> (Tensor, WkvState) {
    let (_, len, _) = k.size3().expect("[B, L, C]");
    let device = k.device();
    let k = k.transpose(1, 2); // [B, C, L]
    let v = v.transpose(1, 2);
    let steps = Tensor::arange(len, (Kind::Float, device));
    // distance[t, i] = t − 1 − i: how often token i has decayed when token t reads it.
    let distance = steps.unsqueeze(1) - steps.unsqueeze(0) - 1.0;
    let w3 = w.view([-1, 1, 1]); // [C, 1, 1]
    let past = k.unsqueeze(2) - &w3 * &distance; // [B, C, L(t), L(i)]
    let diagonal = (u.view([-1, 1]) + &k).diag_embed(0, -2, -1);
    let is_past = distance.ge(0.0); // i < t
    let is_now = Tensor::eye(len, (Kind::Bool, device));
    let logits = past
        .where_self(&is_past, &Tensor::from(MASKED as f32).to_device(device))
        .where_self(&is_now.logical_not(), &diagonal);
    // The carried state is one more position, decayed t times by step t.
    let state_logit = s.p.unsqueeze(2) - w.view([-1, 1]) * &steps; // [B, C, L]
    let max = logits.amax([-1].as_slice(), false).maximum(&state_logit);
    let weights = (logits - max.unsqueeze(3)).exp();
    let state_weight = (state_logit - &max).exp();
    let numerator =
        weights.matmul(&v.unsqueeze(3)).squeeze_dim(3) + &state_weight * s.a.unsqueeze(2);
    let denominator = weights.sum_dim_intlist([-1].as_slice(), false, Kind::Float)
        + &state_weight * s.b.unsqueeze(2);
    let out = (numerator / denominator).transpose(1, 2);

    // State after the last position: every token i decayed len − 1 − i times, the old state len.
    let end_logit = &k - w.view([-1, 1]) * (len as f64 - 1.0 - &steps); // [B, C, L]
    let old_logit = &s.p - w * len as f64; // [B, C]
    let p = end_logit.amax([-1].as_slice(), false).maximum(&old_logit);
    let token_weight = (end_logit - p.unsqueeze(2)).exp();
    let old_weight = (old_logit - &p).exp();
    let next = WkvState {
        a: &old_weight * &s.a
            + (&token_weight * &v).sum_dim_intlist([-1].as_slice(), false, Kind::Float),
        b: &old_weight * &s.b + token_weight.sum_dim_intlist([-1].as_slice(), false, Kind::Float),
        p,
    };
    (out, next)
}

/// WKV over a whole sequence `k`, `v` [B, T, C] from `s`: outputs [B, T, C] and the state after
/// it.
///
/// Token i reaches step t with exponent k_i − (t−1−i)w = (k_i + i·w) − (t−1)w, so the past
/// that step t reads is a weighted mean of the values with weights e^{k_i + i·w}: the decay
/// only scales the total, e^{−(t−1)w}. The carried state joins as one more entry before the
/// tokens. `logcumsumexp` gives the log of each prefix's total weight, D_j, without overflow,
/// in f64 because i·w grows to 10⁴ and beyond and f32 would lose what remains after
/// subtracting (t−1)w. The prefix means then follow a linear recurrence,
/// m_j = e^{D_{j−1}−D_j}·m_{j−1} + e^{L_j−D_j}·value_j (L_j the entry's own log weight), whose
/// factors lie in [0, 1]; [`linear_scan`] evaluates it in log₂ T vectorised steps. Finally
/// each step mixes its past mean with its own value, weighted e^{D−(t−1)w} against e^{u+k_t}.
fn wkv_scan(w: &Tensor, u: &Tensor, k: &Tensor, v: &Tensor, s: &WkvState) -> (Tensor, WkvState) {
    let (_, len, _) = k.size3().expect("[B, T, C]");
    let f64 = Kind::Double;
    let w64 = w.to_kind(f64);
    let steps = Tensor::arange(len, (f64, k.device())).unsqueeze(1); // [T, 1]
    // Entry 0 is the state: step t reads it with exponent p − t·w = (p − w) − (t−1)w, and it
    // stands for a total weight b (a zero b, the empty state, has log weight −∞: here −1e38
    // plus a large negative number, finite so that nothing turns into NaN).
    let state_log_weight = s.p.to_kind(f64) - &w64 + s.b.to_kind(f64).clamp_min(1e-300).log();
    let log_weight = Tensor::cat(
        &[
            state_log_weight.unsqueeze(1),
            k.to_kind(f64) + &steps * &w64,
        ],
        1,
    ); // [B, T+1, C]
    let total = log_weight.logcumsumexp(1);
    // Entry 0 has nothing before it to keep.
    let keep = Tensor::cat(
        &[
            total.narrow(1, 0, 1).zeros_like(),
            (total.narrow(1, 0, len) - total.narrow(1, 1, len)).exp(),
        ],
        1,
    )
    .to_kind(Kind::Float);
    let take = (&log_weight - &total).exp().to_kind(Kind::Float);
    let state_value = &s.a / s.b.clamp_min(f32::MIN_POSITIVE as f64);
    let values = Tensor::cat(&[state_value.unsqueeze(1), v.shallow_clone()], 1);
    let means = linear_scan(&keep, &(take * values)); // [B, T+1, C]

    // Step t: the past (entries 0..=t) against the token itself with bonus u.
    let past_log_weight = total.narrow(1, 0, len) - (&steps - 1.0) * &w64;
    let now_log_weight = (u + k).to_kind(f64);
    let past_share = (past_log_weight - now_log_weight)
        .sigmoid()
        .to_kind(Kind::Float);
    let out = &past_share * means.narrow(1, 0, len) + (1.0 - &past_share) * v;

    // The state after the sequence: the mean of all entries, total weight e^p with b = 1.
    let p = total.select(1, len) - &w64 * (len - 1) as f64;
    let next = WkvState {
        a: means.select(1, len),
        b: p.ones_like().to_kind(Kind::Float),
        p: p.to_kind(Kind::Float),
    };
    (out, next)
}

/// x_j = keep_j·x_{j−1} + add_j along dim 1 from x_{−1} = 0, for `keep` in [0, 1]: each round
/// folds in the terms `span` steps back (Hillis–Steele), so ⌈log₂ T⌉ rounds of whole-tensor
/// products replace T dependent steps.
fn linear_scan(keep: &Tensor, add: &Tensor) -> Tensor {
    let len = add.size()[1];
    let later = |x: &Tensor, span: i64| {
        // x shifted `span` steps later in time, zeros first.
        Tensor::cat(
            &[
                x.narrow(1, 0, span).zeros_like(),
                x.narrow(1, 0, len - span),
            ],
            1,
        )
    };
    let (mut keep, mut sum) = (keep.shallow_clone(), add.shallow_clone());
    let mut span = 1;
    while span < len {
        sum = &sum + &keep * later(&sum, span);
        keep = &keep * later(&keep, span);
        span *= 2;
    }
    sum
}

#[derive(Debug)]
pub struct Rwkv {
    config: RwkvConfig,
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
            input,
            ln0: nn::layer_norm(vs / "ln0", vec![c], Default::default()),
            blocks: (0..config.layers)
                .map(|layer| Block::new(&(vs / "blocks" / layer), &config, layer))
                .collect(),
            ln_out: nn::layer_norm(vs / "ln_out", vec![c], Default::default()),
            head: {
                let mut head = linear(vs / "head", c, keys, 0.5);
                head.bs = Some((vs / "head").zeros("bias", &[keys]));
                head
            },
        }
    }

    /// How [`Rwkv::forward`] should run for training and scoring: `wkv_chunk` 0 means one scan.
    pub fn parallel_mode(&self) -> WkvMode {
        if self.config.wkv_chunk == 0 {
            WkvMode::Scan
        } else {
            WkvMode::Chunked
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
                WkvMode::Chunked => self.config.wkv_chunk.max(1),
                WkvMode::Loop => 1,
                WkvMode::Scan => t,
            };
            let mut start = 0;
            while start < t {
                let len = chunk.min(t - start);
                let (kc, vc) = (k.narrow(1, start, len), v.narrow(1, start, len));
                let (out, s2) = match mode {
                    WkvMode::Chunked => wkv_chunk(&w, &att.time_first, &kc, &vc, &s),
                    WkvMode::Scan => wkv_scan(&w, &att.time_first, &kc, &vc, &s),
                    WkvMode::Loop => {
                        let (o, s2) = wkv_step(
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

impl Rwkv {
    /// The recurrent step as an ONNX graph. State per block `l`, each [batch, C]:
    /// `block{l}.att_x` / `block{l}.ffn_x` (the last inputs of the two token shifts) and the WKV
    /// state `block{l}.att_a`, `att_b`, `att_p` (numerator and denominator scaled by `e^{-p}`,
    /// `p` the running maximum exponent, as in [`wkv_step`]).
    pub fn onnx_step(&self, graph: &mut crate::onnx::StepGraph) -> String {
        let c = self.config.embd;
        let input = graph.linear(
            proto::card::FRAME_INPUT,
            &self.input.ws,
            self.input.bs.as_ref(),
            "input",
        );
        let mut x = graph.layer_norm(&input, &self.ln0, "ln0");
        for (layer, block) in self.blocks.iter().enumerate() {
            let name = |s: &str| format!("block{layer}.{s}");
            let state = |graph: &mut crate::onnx::StepGraph, s: &str, initial: f32, doc: &str| {
                graph.state_input(&name(s), c, initial, doc)
            };
            let att_x = state(
                graph,
                "att_x",
                0.0,
                "last input of the time-mix token shift",
            );
            let att_a = state(graph, "att_a", 0.0, "WKV numerator, scaled by exp(-att_p)");
            let att_b = state(
                graph,
                "att_b",
                0.0,
                "WKV denominator, scaled by exp(-att_p)",
            );
            let att_p = state(
                graph,
                "att_p",
                EMPTY_P as f32,
                "WKV running maximum exponent (-1e38: no past yet)",
            );
            let ffn_x = state(
                graph,
                "ffn_x",
                0.0,
                "last input of the channel-mix token shift",
            );

            // x·mix + previous·(1 − mix), with (1 − mix) stored as a constant.
            let mix =
                |graph: &mut crate::onnx::StepGraph, x: &str, prev: &str, m: &Tensor, n: &str| {
                    let mix = graph.constant(&name(&format!("{n}.mix")), m);
                    let rest = graph.constant(&name(&format!("{n}.one_minus_mix")), &(1.0 - m));
                    let now = graph.node("Mul", &[x, &mix], &name(&format!("{n}.now")), &[]);
                    let before =
                        graph.node("Mul", &[prev, &rest], &name(&format!("{n}.before")), &[]);
                    graph.node("Add", &[&now, &before], &name(&format!("{n}.mixed")), &[])
                };
            let op = |graph: &mut crate::onnx::StepGraph, op: &str, inputs: &[&str], n: &str| {
                graph.node(op, inputs, &name(n), &[])
            };

            let att = &block.att;
            let xa = graph.layer_norm(&x, &block.ln1, &name("ln1"));
            let xk = mix(graph, &xa, &att_x, &att.mix_k, "att.key_in");
            let xv = mix(graph, &xa, &att_x, &att.mix_v, "att.value_in");
            let xr = mix(graph, &xa, &att_x, &att.mix_r, "att.receptance_in");
            let k = graph.linear(&xk, &att.key.ws, None, &name("att.key"));
            let v = graph.linear(&xv, &att.value.ws, None, &name("att.value"));
            let r_lin = graph.linear(
                &xr,
                &att.receptance.ws,
                None,
                &name("att.receptance_linear"),
            );
            let r = op(graph, "Sigmoid", &[&r_lin], "att.receptance");

            // WKV output: the past (a, b at exponent p) and the current token at u + k.
            let u = graph.constant(&name("att.time_first"), &att.time_first);
            let w = graph.constant(&name("att.decay"), &att.time_decay.exp());
            let now = op(graph, "Add", &[&u, &k], "att.wkv.now_exponent");
            let p = op(graph, "Max", &[&att_p, &now], "att.wkv.max_exponent");
            let d1 = op(graph, "Sub", &[&att_p, &p], "att.wkv.past_shift");
            let e1 = op(graph, "Exp", &[&d1], "att.wkv.past_weight");
            let d2 = op(graph, "Sub", &[&now, &p], "att.wkv.now_shift");
            let e2 = op(graph, "Exp", &[&d2], "att.wkv.now_weight");
            let past_a = op(graph, "Mul", &[&e1, &att_a], "att.wkv.past_numerator");
            let now_a = op(graph, "Mul", &[&e2, &v], "att.wkv.now_numerator");
            let num = op(graph, "Add", &[&past_a, &now_a], "att.wkv.numerator");
            let past_b = op(graph, "Mul", &[&e1, &att_b], "att.wkv.past_denominator");
            let den = op(graph, "Add", &[&past_b, &e2], "att.wkv.denominator");
            let wkv = op(graph, "Div", &[&num, &den], "att.wkv");
            // Next state: the past decays by w, the current token joins at exponent k.
            let decayed = op(graph, "Sub", &[&att_p, &w], "att.wkv.decayed_exponent");
            let p_next = op(graph, "Max", &[&decayed, &k], "att.wkv.next_max_exponent");
            let d1 = op(
                graph,
                "Sub",
                &[&decayed, &p_next],
                "att.wkv.next_past_shift",
            );
            let e1 = op(graph, "Exp", &[&d1], "att.wkv.next_past_weight");
            let d2 = op(graph, "Sub", &[&k, &p_next], "att.wkv.next_now_shift");
            let e2 = op(graph, "Exp", &[&d2], "att.wkv.next_now_weight");
            let past_a = op(graph, "Mul", &[&e1, &att_a], "att.wkv.next_past_numerator");
            let now_a = op(graph, "Mul", &[&e2, &v], "att.wkv.next_now_numerator");
            let a_next = op(graph, "Add", &[&past_a, &now_a], "att.wkv.next_numerator");
            let past_b = op(
                graph,
                "Mul",
                &[&e1, &att_b],
                "att.wkv.next_past_denominator",
            );
            let b_next = op(graph, "Add", &[&past_b, &e2], "att.wkv.next_denominator");

            let gated = op(graph, "Mul", &[&r, &wkv], "att.gated");
            let att_out = graph.linear(&gated, &att.output.ws, None, &name("att.output"));
            x = op(graph, "Add", &[&x, &att_out], "after_att");

            let ffn = &block.ffn;
            let xf = graph.layer_norm(&x, &block.ln2, &name("ln2"));
            let xk = mix(graph, &xf, &ffn_x, &ffn.mix_k, "ffn.key_in");
            let xr = mix(graph, &xf, &ffn_x, &ffn.mix_r, "ffn.receptance_in");
            let key = graph.linear(&xk, &ffn.key.ws, None, &name("ffn.key"));
            let relu = op(graph, "Relu", &[&key], "ffn.key_relu");
            let squared = op(graph, "Mul", &[&relu, &relu], "ffn.key_relu_squared");
            let value = graph.linear(&squared, &ffn.value.ws, None, &name("ffn.value"));
            let r_lin = graph.linear(
                &xr,
                &ffn.receptance.ws,
                None,
                &name("ffn.receptance_linear"),
            );
            let r = op(graph, "Sigmoid", &[&r_lin], "ffn.receptance");
            let ffn_out = op(graph, "Mul", &[&r, &value], "ffn.gated");
            x = op(graph, "Add", &[&x, &ffn_out], "after_ffn");

            graph.state_output(&att_x, &xa);
            graph.state_output(&att_a, &a_next);
            graph.state_output(&att_b, &b_next);
            graph.state_output(&att_p, &p_next);
            graph.state_output(&ffn_x, &xf);
        }
        let out = graph.layer_norm(&x, &self.ln_out, "ln_out");
        graph.linear(&out, &self.head.ws, self.head.bs.as_ref(), "head")
    }
}
