//! The output heads: what distribution a model puts over the 88 keys of the next frame.
//!
//! - `bernoulli`: 88 independent keys; the model's output row is the 88 logits.
//! - `nade`: the keys of a frame are decided one after another, lowest key (MIDI 21) first, each
//!   conditioned on the keys below it, as in RNN-NADE (Boulanger-Lewandowski et al. 2012; NADE:
//!   Larochelle & Murray 2011). The model's output row holds, per frame, a bias for each key
//!   (`b`, 88) and for each NADE hidden unit (`c`, H); shared weights `W` [H, 88] carry the keys
//!   already decided to the hidden units and `V` [88, H] the hidden units to each key:
//!
//!   ```text
//!   h_i = sigmoid(c + Σ_{k<i} W[:, k]·x_k)        logit_i = b_i + V[i, :]·h_i
//!   ```
//!   Given the frame (teacher forcing) every `h_i` comes from one exclusive cumulative sum over
//!   the keys, so a frame's exact log-likelihood is one pass of whole-tensor operations
//!   ([`Nade::conditional_logits`]); deciding or sampling a frame runs the 88 keys in order
//!   ([`Nade::unroll`]).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

use pipeline::KEY_COUNT;
use proto::card::UNIFORM_INPUT;

use crate::onnx::{Attr, HeadOutputs, StepGraph};

/// Which head a model has (part of its saved configuration; `bernoulli` when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeadConfig {
    #[default]
    Bernoulli,
    Nade {
        /// NADE hidden units.
        hidden: i64,
    },
}

/// The heads by name, as recipes and flags give them (`--head nade --nade-hidden H`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    Bernoulli,
    Nade,
}

/// NADE hidden units when a recipe or the flags name none.
pub const DEFAULT_NADE_HIDDEN: i64 = 128;

impl HeadConfig {
    /// Width of the model's output row that the head reads.
    pub fn input_width(&self) -> i64 {
        match self {
            HeadConfig::Bernoulli => KEY_COUNT as i64,
            HeadConfig::Nade { hidden } => KEY_COUNT as i64 + hidden,
        }
    }
}

/// NADE's shared weights.
#[derive(Debug)]
pub struct Nade {
    /// [H, 88]: each decided key's contribution to the hidden pre-activations.
    w: Tensor,
    /// [88, H]: the hidden units' contribution to each key's logit.
    v: Tensor,
}

impl Nade {
    pub fn new(vs: &nn::Path, hidden: i64) -> Nade {
        let keys = KEY_COUNT as i64;
        let init = |fan_in: i64| nn::Init::Uniform {
            lo: -1.0 / (fan_in as f64).sqrt(),
            up: 1.0 / (fan_in as f64).sqrt(),
        };
        Nade {
            w: vs.var("w", &[hidden, keys], init(keys)),
            v: vs.var("v", &[keys, hidden], init(hidden)),
        }
    }

    /// The key biases `b` [.., 88] and hidden biases `c` [.., H] of output rows `params`.
    fn biases(params: &Tensor) -> (Tensor, Tensor) {
        let keys = KEY_COUNT as i64;
        let width = *params.size().last().expect("rows");
        (
            params.narrow(-1, 0, keys),
            params.narrow(-1, keys, width - keys),
        )
    }

    /// Teacher forcing: the logit of each key of `frames` [.., 88] given the keys below it in
    /// the same frame, from output rows `params` [.., 88 + H]. The frame's log-likelihood is
    /// the Bernoulli log-likelihood of `frames` under these logits.
    pub fn conditional_logits(&self, params: &Tensor, frames: &Tensor) -> Tensor {
        let (b, c) = Self::biases(params);
        // Key k's contribution to the hidden pre-activations: x_k·W[:, k], [.., 88, H].
        let contributions = frames.unsqueeze(-1) * self.w.transpose(0, 1);
        // Exclusive prefix sums over the keys: key i sees the keys below it only.
        let below = Tensor::cat(
            &[
                contributions.narrow(-2, 0, 1).zeros_like(),
                contributions.narrow(-2, 0, KEY_COUNT as i64 - 1),
            ],
            -2,
        )
        .cumsum(-2, Kind::Float);
        let hidden = (below + c.unsqueeze(-2)).sigmoid(); // [.., 88, H]
        b + (hidden * &self.v).sum_dim_intlist([-1].as_slice(), false, Kind::Float)
    }

    /// Decide a frame key by key from output rows `params` [N, 88 + H]: `choose(i, logits)`
    /// turns key i's logits [N] into its values [N] (0 or 1), which condition the keys above.
    /// Returns the frame [N, 88] and the logits each key was decided with.
    // `x = x + …` on purpose: Tensor's `+=` works in place, and the first `x` is a view of
    // `params`.
    #[allow(clippy::assign_op_pattern)]
    pub fn unroll(
        &self,
        params: &Tensor,
        mut choose: impl FnMut(usize, &Tensor) -> Tensor,
    ) -> (Tensor, Tensor) {
        let (b, c) = Self::biases(params);
        let mut pre_activation = c.shallow_clone(); // [N, H]
        let (mut keys, mut logits) = (Vec::new(), Vec::new());
        for i in 0..KEY_COUNT as i64 {
            let hidden = pre_activation.sigmoid();
            let logit = b.select(-1, i) + hidden.matmul(&self.v.get(i));
            let key = choose(i as usize, &logit).to_kind(Kind::Float);
            pre_activation = pre_activation + key.unsqueeze(-1) * self.w.select(1, i);
            keys.push(key);
            logits.push(logit);
        }
        (Tensor::stack(&keys, -1), Tensor::stack(&logits, -1))
    }

    /// [`Nade::unroll`] with the sampling rule, as ONNX: the 88 keys one after another in the
    /// graph itself (about ten small nodes a key, no `Loop` op), so the whole step is one fixed
    /// graph that an execution provider can run, or capture, as it is.
    pub fn onnx_sample(&self, graph: &mut StepGraph, rows: &str) -> HeadOutputs {
        let keys = KEY_COUNT as i64;
        let hidden = self.w.size()[0];
        let sizes = graph.constant_i64("nade.split_sizes", &[keys, hidden]);
        let (b, c) = ("nade.key_bias", "nade.hidden_bias");
        graph.node_n("Split", &[rows, &sizes], &[b, c], &[Attr::Int("axis", 1)]);
        let column_names =
            |prefix: &str| -> Vec<String> { (0..keys).map(|i| format!("{prefix}.{i}")).collect() };
        let (b_columns, u_columns) = (column_names("nade.b"), column_names("nade.uniform"));
        graph.node_n("Split", &[b], &as_strs(&b_columns), &[Attr::Int("axis", 1)]);
        graph.node_n(
            "Split",
            &[UNIFORM_INPUT],
            &as_strs(&u_columns),
            &[Attr::Int("axis", 1)],
        );
        let mut pre_activation = c.to_owned();
        let (mut logits, mut probabilities, mut decided) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..keys {
            let name = format!("nade.key{i}");
            let hidden_units = graph.node(
                "Sigmoid",
                &[&pre_activation],
                &format!("{name}.hidden"),
                &[],
            );
            let v = graph.constant(&format!("{name}.v"), &self.v.get(i).unsqueeze(1));
            let from_hidden = graph.node(
                "MatMul",
                &[&hidden_units, &v],
                &format!("{name}.from_hidden"),
                &[],
            );
            let logit = graph.node(
                "Add",
                &[&b_columns[i as usize], &from_hidden],
                &format!("{name}.logit"),
                &[],
            );
            let (probability, key) = graph.draw_keys(&logit, &u_columns[i as usize], &name);
            if i + 1 < keys {
                let w = graph.constant(&format!("{name}.w"), &self.w.select(1, i).unsqueeze(0));
                let contribution =
                    graph.node("Mul", &[&key, &w], &format!("{name}.contribution"), &[]);
                pre_activation = graph.node(
                    "Add",
                    &[&pre_activation, &contribution],
                    &format!("{name}.pre_activation"),
                    &[],
                );
            }
            logits.push(logit);
            probabilities.push(probability);
            decided.push(key);
        }
        let concat = |graph: &mut StepGraph, values: &[String], name: &str| {
            graph.node("Concat", &as_strs(values), name, &[Attr::Int("axis", 1)])
        };
        HeadOutputs {
            logits: concat(graph, &logits, "nade.logits"),
            probabilities: concat(graph, &probabilities, "nade.probabilities"),
            next_frame: concat(graph, &decided, "nade.next_frame"),
        }
    }
}

fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn random_nade(hidden: i64) -> (nn::VarStore, Nade) {
        let vs = nn::VarStore::new(Device::Cpu);
        let nade = Nade::new(&vs.root(), hidden);
        tch::no_grad(|| {
            for (_, mut var) in vs.variables() {
                var.copy_(&(Tensor::randn_like(&var) * 0.5));
            }
        });
        (vs, nade)
    }

    /// The one-pass conditional logits equal those of deciding the keys one by one with the
    /// frame's own keys, so the one-pass log-likelihood is the product of the conditionals.
    #[test]
    fn one_pass_logits_equal_the_key_by_key_conditionals() {
        tch::manual_seed(1);
        let (_vs, nade) = random_nade(16);
        let params = Tensor::randn([5, 88 + 16], (Kind::Float, Device::Cpu));
        let frames = Tensor::rand([5, 88], (Kind::Float, Device::Cpu))
            .lt(0.2)
            .to_kind(Kind::Float);
        let one_pass = nade.conditional_logits(&params, &frames);
        let (replayed, key_by_key) = nade.unroll(&params, |i, _| frames.select(1, i as i64));
        assert_eq!(Vec::<f32>::try_from(replayed.reshape([-1])).unwrap(), {
            Vec::<f32>::try_from(frames.reshape([-1])).unwrap()
        });
        let worst = (&one_pass - &key_by_key).abs().max().double_value(&[]);
        assert!(worst < 1e-5, "one pass and key by key differ by {worst}");
        // The frame's log-likelihood as the sum of the 88 conditionals, computed both ways.
        let nll = |logits: &Tensor| {
            logits
                .binary_cross_entropy_with_logits::<Tensor>(
                    &frames,
                    None,
                    None,
                    tch::Reduction::Sum,
                )
                .double_value(&[])
        };
        assert!((nll(&one_pass) - nll(&key_by_key)).abs() < 1e-3);
        // A key's logit depends on the keys below it and not on itself or those above.
        let flipped = frames.copy();
        let _ = flipped
            .get(0)
            .get(40)
            .fill_(1.0 - frames.double_value(&[0, 40]));
        let moved = nade.conditional_logits(&params, &flipped) - &one_pass;
        let row: Vec<f32> = Vec::try_from(moved.get(0).abs()).unwrap();
        assert!(row[..=40].iter().all(|d| *d == 0.0), "{row:?}");
        assert!(row[41..].iter().any(|d| *d > 0.0), "{row:?}");
    }
}
