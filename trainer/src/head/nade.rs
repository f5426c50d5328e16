//! The NADE head: the keys of a frame are decided one after another, lowest key (MIDI 21)
//! first, each conditioned on the keys below it, as in RNN-NADE (Boulanger-Lewandowski et al.
//! 2012; NADE: Larochelle & Murray 2011), or highest first ([`KeyOrder`]). The model's output row holds, per frame, a bias for
//! each key (`b`, 88) and for each NADE hidden unit (`c`, H); shared weights `W` [H, 88] carry
//! the keys already decided to the hidden units and `V` [88, H] the hidden units to each key:
//!
//! ```text
//! h_i = sigmoid(c + Σ_{k<i} W[:, k]·x_k)        logit_i = b_i + V[i, :]·h_i
//! ```
//! Given the frame (teacher forcing) every `h_i` comes from one exclusive cumulative sum over
//! the keys, so a frame's exact log-likelihood is one pass of whole-tensor operations
//! ([`Nade::conditional_logits`]); deciding or sampling a frame runs the 88 keys in order
//! ([`Nade::unroll`]).
//!
//! The formulas are written for the lowest-first order. Highest first is the same NADE over the
//! keys turned upside down: key biases and frames are flipped on the way in and logits and
//! decisions on the way out, so `W`'s column `j` and `V`'s row `j` belong to the `j`-th key
//! decided, not to key `j`. Why another order: a key decided first cannot see the keys decided
//! after it in its frame, so with a melody fixed on top (harmonising) only highest-first lets
//! the accompaniment below see the melody note of its own frame.

use tch::{Kind, Tensor, nn};

use pianoroll::KEY_COUNT;

use super::KeyOrder;
use crate::onnx::{Attr, HeadOutputs, StepGraph};

/// NADE's shared weights.
#[derive(Debug)]
pub struct Nade {
    /// [H, 88]: each decided key's contribution to the hidden pre-activations.
    w: Tensor,
    /// [88, H]: the hidden units' contribution to each key's logit.
    v: Tensor,
    /// Which key is decided first.
    order: KeyOrder,
}

impl Nade {
    /// A NADE over the 88 keys with `hidden` hidden units, deciding keys in `order`.
    pub fn new(vs: &nn::Path, hidden: i64, order: KeyOrder) -> Nade {
        Nade::with_keys(vs, KEY_COUNT as i64, hidden, order)
    }

    /// A NADE over `keys` keys (models use 88; tests also use small keyboards, whose 2^keys
    /// frames can be listed).
    pub fn with_keys(vs: &nn::Path, keys: i64, hidden: i64, order: KeyOrder) -> Nade {
        let init = |fan_in: i64| nn::Init::Uniform {
            lo: -1.0 / (fan_in as f64).sqrt(),
            up: 1.0 / (fan_in as f64).sqrt(),
        };
        Nade {
            w: vs.var("w", &[hidden, keys], init(keys)),
            v: vs.var("v", &[keys, hidden], init(hidden)),
            order,
        }
    }

    /// `keys` [.., 88] in decision order (flipped when highest first); its own inverse.
    fn in_order(&self, keys: &Tensor) -> Tensor {
        match self.order {
            KeyOrder::LowestFirst => keys.shallow_clone(),
            KeyOrder::HighestFirst => keys.flip([-1]),
        }
    }

    /// Output rows [.., 88 + H] with their key biases in decision order.
    fn rows_in_order(&self, params: &Tensor) -> Tensor {
        match self.order {
            KeyOrder::LowestFirst => params.shallow_clone(),
            KeyOrder::HighestFirst => {
                let (b, c) = self.biases(params);
                Tensor::cat(&[b.flip([-1]), c], -1)
            }
        }
    }

    /// The key decided `j`-th.
    fn key_decided(&self, j: i64) -> i64 {
        match self.order {
            KeyOrder::LowestFirst => j,
            KeyOrder::HighestFirst => self.keys() - 1 - j,
        }
    }

    /// The number of keys.
    fn keys(&self) -> i64 {
        self.w.size()[1]
    }

    /// The key biases `b` [.., 88] and hidden biases `c` [.., H] of output rows `params`.
    fn biases(&self, params: &Tensor) -> (Tensor, Tensor) {
        let keys = self.keys();
        let width = *params.size().last().expect("rows");
        (
            params.narrow(-1, 0, keys),
            params.narrow(-1, keys, width - keys),
        )
    }

    /// Teacher forcing: the logit of each key of `frames` [.., 88] given the keys below it in
    /// the same frame, from output rows `params` [.., 88 + H]. The frame's log-likelihood is
    /// the Bernoulli log-likelihood of `frames` under these logits.
    ///
    /// Key i's hidden pre-activation is `c` plus the `W` columns of the keys sounding below it,
    /// so it only changes at a sounding key: a frame with n sounding keys has n + 1 distinct
    /// hidden vectors, not 88 (about 5 in this music). They are computed once each (a cumulative
    /// sum over the sounding keys' columns), their contributions to all 88 logits in one matrix
    /// product, and each key picks the vector of its segment. The tensors are
    /// [frames, n + 1, H] instead of the [frames, 88, H] of the direct form
    /// ([`Nade::conditional_logits_direct`], kept as the reference), which made NADE training
    /// memory-bound.
    pub fn conditional_logits(&self, params: &Tensor, frames: &Tensor) -> Tensor {
        let logits = self
            .conditional_logits_lowest_first(&self.rows_in_order(params), &self.in_order(frames));
        self.in_order(&logits)
    }

    /// [`Nade::conditional_logits`] with keys in decision order.
    fn conditional_logits_lowest_first(&self, params: &Tensor, frames: &Tensor) -> Tensor {
        let keys = self.keys();
        let (b, c) = self.biases(params);
        let hidden_size = self.w.size()[0];
        let lead: Vec<i64> = frames.size()[..frames.dim() - 1].to_vec();
        let frames = frames.reshape([-1, keys]);
        let c = c.reshape([-1, hidden_size]);
        let on = frames.gt(0.5);
        // Segment of each key: how many keys sound below it.
        let segment = (on.cumsum(-1, Kind::Int64) - on.to_kind(Kind::Int64)).unsqueeze(-2);
        let most = on
            .sum_dim_intlist([-1].as_slice(), false, Kind::Int64)
            .max()
            .int64_value(&[]);
        // The sounding keys of each frame, lowest first, padded with key 0 (masked out): the
        // sort is stable, so keys that sound come first in key order.
        let (_, order) = on
            .logical_not()
            .to_kind(Kind::Int8)
            .sort_stable(true, -1, false);
        let sounding = order.narrow(-1, 0, most); // [F, most]
        let present = Tensor::arange(most, (Kind::Int64, frames.device()))
            .unsqueeze(0)
            .lt_tensor(&on.sum_dim_intlist([-1].as_slice(), true, Kind::Int64))
            .to_kind(Kind::Float)
            .unsqueeze(-1); // [F, most, 1]
        let columns = self
            .w
            .transpose(0, 1)
            .index_select(0, &sounding.reshape([-1]));
        let columns = columns.reshape([-1, most, hidden_size]) * present;
        // Pre-activation of segment s: c plus the columns of the first s sounding keys.
        let pre = Tensor::cat(&[c.unsqueeze(-2), columns], -2).cumsum(-2, Kind::Float);
        let hidden = pre.sigmoid(); // [F, most + 1, H]
        let per_segment = hidden.matmul(&self.v.transpose(0, 1)); // [F, most + 1, 88]
        let from_hidden = per_segment.gather(-2, &segment, false).squeeze_dim(-2);
        let mut shape = lead;
        shape.push(keys);
        b + from_hidden.reshape(shape.as_slice())
    }

    /// The direct form of [`Nade::conditional_logits`]: every key's hidden vector from an
    /// exclusive cumulative sum over all 88 keys, a [.., 88, H] tensor. The reference the
    /// tests hold the fast form to.
    pub fn conditional_logits_direct(&self, params: &Tensor, frames: &Tensor) -> Tensor {
        let (params, frames) = (self.rows_in_order(params), self.in_order(frames));
        let (b, c) = self.biases(&params);
        // Key k's contribution to the hidden pre-activations: x_k·W[:, k], [.., 88, H].
        let contributions = frames.unsqueeze(-1) * self.w.transpose(0, 1);
        // Exclusive prefix sums over the keys: key i sees the keys below it only.
        let below = Tensor::cat(
            &[
                contributions.narrow(-2, 0, 1).zeros_like(),
                contributions.narrow(-2, 0, self.keys() - 1),
            ],
            -2,
        )
        .cumsum(-2, Kind::Float);
        let hidden = (below + c.unsqueeze(-2)).sigmoid(); // [.., 88, H]
        self.in_order(
            &(b + (hidden * &self.v).sum_dim_intlist([-1].as_slice(), false, Kind::Float)),
        )
    }

    /// Decide a frame key by key, in the head's order, from output rows `params` [N, 88 + H]:
    /// `choose(i, logits)` turns key i's logits [N] into its values [N] (0 or 1), which
    /// condition the keys decided after it. Returns the frame [N, 88] and the logits each key
    /// was decided with, both in key order.
    // `x = x + …` on purpose: Tensor's `+=` works in place, and the first `x` is a view of
    // `params`.
    #[allow(clippy::assign_op_pattern)]
    pub fn unroll(
        &self,
        params: &Tensor,
        mut choose: impl FnMut(usize, &Tensor) -> Tensor,
    ) -> (Tensor, Tensor) {
        let (b, c) = self.biases(params);
        let mut pre_activation = c.shallow_clone(); // [N, H]
        let (mut keys, mut logits) = (Vec::new(), Vec::new());
        for j in 0..self.keys() {
            let key_index = self.key_decided(j);
            let hidden = pre_activation.sigmoid();
            let logit = b.select(-1, key_index) + hidden.matmul(&self.v.get(j));
            let key = choose(key_index as usize, &logit).to_kind(Kind::Float);
            pre_activation = pre_activation + key.unsqueeze(-1) * self.w.select(1, j);
            keys.push(key);
            logits.push(logit);
        }
        let (keys, logits) = (Tensor::stack(&keys, -1), Tensor::stack(&logits, -1));
        (self.in_order(&keys), self.in_order(&logits))
    }

    /// [`Nade::unroll`] with the sampling rule, as ONNX: the 88 keys one after another in the
    /// graph itself (five small nodes a key, no `Loop` op), so the whole step is one fixed
    /// graph that an execution provider can run, or capture, as it is.
    pub fn onnx_sample(&self, graph: &mut StepGraph, rows: &str) -> HeadOutputs {
        let keys = self.keys();
        let hidden = self.w.size()[0];
        let sizes = graph.constant_i64("nade.split_sizes", &[keys, hidden]);
        let (b, c) = ("nade.key_bias", "nade.hidden_bias");
        graph.node_n("Split", &[rows, &sizes], &[b, c], &[Attr::Int("axis", 1)]);
        let column_names =
            |prefix: &str| -> Vec<String> { (0..keys).map(|i| format!("{prefix}.{i}")).collect() };
        let (b_columns, threshold_columns) =
            (column_names("nade.b"), column_names("nade.threshold"));
        graph.node_n("Split", &[b], &as_strs(&b_columns), &[Attr::Int("axis", 1)]);
        let thresholds = graph.sampling_thresholds();
        graph.node_n(
            "Split",
            &[&thresholds],
            &as_strs(&threshold_columns),
            &[Attr::Int("axis", 1)],
        );
        let mut pre_activation = c.to_owned();
        // Each key's logit and decision, by key (filled in the head's order).
        let (mut logits, mut decided) = (vec![String::new(); keys as usize], Vec::new());
        decided.resize(keys as usize, String::new());
        for j in 0..keys {
            let i = self.key_decided(j);
            let name = format!("nade.key{i}");
            let hidden_units = graph.node(
                "Sigmoid",
                &[&pre_activation],
                &format!("{name}.hidden"),
                &[],
            );
            // One Gemm each for b_i + h·V[i] and for pre + x_i·W[:, i] (x_i is 0 or 1, so the
            // product is exact and the sum rounds once, as in tch).
            let v = graph.constant(&format!("{name}.v"), &self.v.get(j).unsqueeze(1));
            let logit = graph.node(
                "Gemm",
                &[&hidden_units, &v, &b_columns[i as usize]],
                &format!("{name}.logit"),
                &[],
            );
            let key = graph.decide_keys(&logit, &threshold_columns[i as usize], &name);
            if j + 1 < keys {
                let w = graph.constant(&format!("{name}.w"), &self.w.select(1, j).unsqueeze(0));
                pre_activation = graph.node(
                    "Gemm",
                    &[&key, &w, &pre_activation],
                    &format!("{name}.pre_activation"),
                    &[],
                );
            }
            logits[i as usize] = logit;
            decided[i as usize] = key;
        }
        let concat = |graph: &mut StepGraph, values: &[String], name: &str| {
            graph.node("Concat", &as_strs(values), name, &[Attr::Int("axis", 1)])
        };
        let logits = concat(graph, &logits, "nade.logits");
        HeadOutputs {
            probabilities: graph.probabilities(&logits, "nade"),
            next_frame: concat(graph, &decided, "nade.next_frame"),
            logits,
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

    const ORDERS: [KeyOrder; 2] = [KeyOrder::LowestFirst, KeyOrder::HighestFirst];

    fn random_nade(hidden: i64, order: KeyOrder) -> (nn::VarStore, Nade) {
        let vs = nn::VarStore::new(Device::Cpu);
        let nade = Nade::new(&vs.root(), hidden, order);
        tch::no_grad(|| {
            for (_, mut var) in vs.variables() {
                var.copy_(&(Tensor::randn_like(&var) * 0.5));
            }
        });
        (vs, nade)
    }

    /// The one-pass conditional logits equal those of deciding the keys one by one with the
    /// frame's own keys, so the one-pass log-likelihood is the product of the conditionals; in
    /// both orders.
    #[test]
    fn one_pass_logits_equal_the_key_by_key_conditionals() {
        for order in ORDERS {
            one_pass_logits_equal_the_key_by_key_conditionals_in(order);
        }
    }

    fn one_pass_logits_equal_the_key_by_key_conditionals_in(order: KeyOrder) {
        tch::manual_seed(1);
        let (_vs, nade) = random_nade(16, order);
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
        // A key's logit depends on the keys decided before it (below it when lowest first,
        // above it when highest first) and not on itself or those decided after.
        let flipped = frames.copy();
        let _ = flipped
            .get(0)
            .get(40)
            .fill_(1.0 - frames.double_value(&[0, 40]));
        let moved = nade.conditional_logits(&params, &flipped) - &one_pass;
        let row: Vec<f32> = Vec::try_from(moved.get(0).abs()).unwrap();
        let (unmoved, moved) = match order {
            KeyOrder::LowestFirst => (&row[..=40], &row[41..]),
            KeyOrder::HighestFirst => (&row[40..], &row[..40]),
        };
        assert!(unmoved.iter().all(|d| *d == 0.0), "{order:?}: {row:?}");
        assert!(moved.iter().any(|d| *d > 0.0), "{order:?}: {row:?}");
    }

    /// The segment form equals the direct one in values and in the gradients of the rows and
    /// of both weight matrices, on frames from silent to dense, in a [B, T, 88] layout.
    #[test]
    fn segment_form_equals_the_direct_form_in_values_and_gradients() {
        for order in ORDERS {
            segment_form_equals_the_direct_form_in(order);
        }
    }

    fn segment_form_equals_the_direct_form_in(order: KeyOrder) {
        tch::manual_seed(3);
        let (_vs, nade) = random_nade(16, order);
        let params =
            Tensor::randn([3, 7, 88 + 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let density = Tensor::rand([3, 7, 1], (Kind::Float, Device::Cpu)) * 0.5;
        let frames = Tensor::rand([3, 7, 88], (Kind::Float, Device::Cpu))
            .lt_tensor(&density)
            .to_kind(Kind::Float);
        let _ = frames.get(0).get(0).fill_(0.0); // a silent frame
        let _ = frames.get(0).get(1).fill_(1.0); // every key
        let target = Tensor::rand([3, 7, 88], (Kind::Float, Device::Cpu));
        let mut results = Vec::new();
        for direct in [false, true] {
            let logits = if direct {
                nade.conditional_logits_direct(&params, &frames)
            } else {
                nade.conditional_logits(&params, &frames)
            };
            let loss = (&logits * &target).sum(Kind::Float);
            let grads = Tensor::run_backward(&[loss], &[&params, &nade.w, &nade.v], false, false);
            results.push((logits.detach(), grads));
        }
        let (fast, direct) = (&results[0], &results[1]);
        let worst = (&fast.0 - &direct.0).abs().max().double_value(&[]);
        assert!(worst < 1e-5, "logits differ by {worst}");
        for (i, (f, d)) in fast.1.iter().zip(&direct.1).enumerate() {
            let worst = (f - d).abs().max().double_value(&[]);
            assert!(worst < 1e-4, "gradient {i} differs by {worst}");
        }
    }

    /// On a keyboard of 10 keys, the probabilities of all 2^10 frames sum to 1, in the segment
    /// form and in the direct one: the conditionals make a distribution.
    #[test]
    fn probabilities_of_every_frame_of_a_small_keyboard_sum_to_one() {
        tch::manual_seed(4);
        let (keys, hidden) = (10i64, 6i64);
        let vs = nn::VarStore::new(Device::Cpu);
        let nade = Nade::with_keys(&vs.root(), keys, hidden, KeyOrder::HighestFirst);
        tch::no_grad(|| {
            for (_, mut var) in vs.variables() {
                var.copy_(&Tensor::randn_like(&var));
            }
        });
        let count = 1i64 << keys;
        let bits: Vec<f32> = (0..count)
            .flat_map(|frame| (0..keys).map(move |k| ((frame >> k) & 1) as f32))
            .collect();
        let frames = Tensor::from_slice(&bits).reshape([count, keys]);
        for trial in 0..3 {
            let params = Tensor::randn([1, keys + hidden], (Kind::Float, Device::Cpu))
                .expand([count, keys + hidden], false);
            for (form, logits) in [
                ("segment", nade.conditional_logits(&params, &frames)),
                ("direct", nade.conditional_logits_direct(&params, &frames)),
            ] {
                let log_p = -logits
                    .to_kind(Kind::Double)
                    .binary_cross_entropy_with_logits::<Tensor>(
                        &frames.to_kind(Kind::Double),
                        None,
                        None,
                        tch::Reduction::None,
                    )
                    .sum_dim_intlist([-1].as_slice(), false, Kind::Double);
                let total = log_p.exp().sum(Kind::Double).double_value(&[]);
                assert!(
                    (total - 1.0).abs() < 1e-5,
                    "{form} form, trial {trial}: the 1024 frames sum to {total}"
                );
            }
        }
    }
}
