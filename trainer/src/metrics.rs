//! The literature's metrics for polyphonic next-frame prediction (Boulanger-Lewandowski et al.
//! 2012), computed over real (non-padding) positions only:
//!
//! - **NLL per frame**: the sum of the 88 Bernoulli negative log-likelihoods of a frame, averaged
//!   over predicted frames (nats). This is also the training loss.
//! - **BCE per pitch**: the same sum divided by 88: the mean binary cross-entropy per key.
//! - **Frame accuracy** (Bay et al. 2009): `ΣTP / Σ(TP + FP + FN)` over all predicted frames and
//!   keys, a key predicted on when its probability is above 0.5 (logit > 0; with a NADE head,
//!   given the keys decided below it: [`crate::model::Model::predict`]). Silent-silent keys
//!   count for nothing, so predicting silence scores 0, not 95%.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use pianoroll::KEY_COUNT;

/// Row indices of the real positions of `mask` [B, T], into tensors flattened to [B·T, 88].
fn real_rows(mask: &Tensor) -> Tensor {
    mask.reshape([-1]).nonzero().squeeze_dim(1)
}

/// The rows `rows` of `x` [B, T, 88], flattened to [N, 88].
fn pick_rows(x: &Tensor, rows: &Tensor) -> Tensor {
    x.reshape([-1, KEY_COUNT as i64]).index_select(0, rows)
}

/// The real positions of `mask` [B, T] and the rows of `logits` and `targets` [B, T, 88] there,
/// each flattened to [N, 88]. The mask is resolved to indices once for both tensors.
pub fn select_real(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let rows = real_rows(mask);
    (pick_rows(logits, &rows), pick_rows(targets, &rows))
}

/// Summed NLL of already selected rows (a scalar with gradient) and their count.
fn nll_of_rows(logits: &Tensor, targets: &Tensor) -> (Tensor, i64) {
    let sum =
        logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::Sum);
    (sum, logits.size()[0])
}

/// Summed NLL over real positions (a scalar with gradient) and their count.
pub fn nll_sum(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> (Tensor, i64) {
    let (logits, targets) = select_real(logits, targets, mask);
    nll_of_rows(&logits, &targets)
}

/// Running totals for one evaluation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub nll: f64,
    pub frames: i64,
    pub true_positives: i64,
    pub false_positives: i64,
    pub false_negatives: i64,
}

impl Totals {
    /// Add the frames of `targets` [B, T, 88] that `mask` [B, T] marks real: their NLL under
    /// `logits` and the keys of `predicted` (0/1) against theirs.
    pub fn add(&mut self, logits: &Tensor, predicted: &Tensor, targets: &Tensor, mask: &Tensor) {
        // The mask resolved to row indices once, for all three tensors.
        let rows = real_rows(mask);
        let pick = |x: &Tensor| pick_rows(x, &rows);
        let (logits, targets, predicted) = (pick(logits), pick(targets), pick(predicted));
        let (sum, frames) = nll_of_rows(&logits, &targets);
        self.nll += sum.double_value(&[]);
        self.frames += frames;
        let predicted = predicted.gt(0.5);
        let actual = targets.gt(0.5);
        let count = |t: Tensor| t.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
        self.true_positives += count(predicted.logical_and(&actual));
        self.false_positives += count(predicted.logical_and(&actual.logical_not()));
        self.false_negatives += count(predicted.logical_not().logical_and(&actual));
    }

    pub fn scores(&self) -> Scores {
        let frames = self.frames.max(1) as f64;
        let denominator =
            (self.true_positives + self.false_positives + self.false_negatives).max(1);
        Scores {
            nll_per_frame: self.nll / frames,
            bce_per_pitch: self.nll / frames / KEY_COUNT as f64,
            frame_accuracy: self.true_positives as f64 / denominator as f64,
            frames: self.frames,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub nll_per_frame: f64,
    pub bce_per_pitch: f64,
    pub frame_accuracy: f64,
    pub frames: i64,
}

/// NLL per frame of the constant-rate baseline on the predicted frames of `rolls`: each key on
/// at its own rate in `train` (add-½ smoothed), whatever came before.
pub fn key_rate_baseline(train: &[pianoroll::PianoRoll], rolls: &[pianoroll::PianoRoll]) -> f64 {
    use pipeline::baseline::{constant_rate_nll, key_counts};
    let (on, frames) = key_counts(rolls, true);
    constant_rate_nll(&key_rates(train), &on, frames)
}

/// How often each key is on in the predicted frames of `train` (smoothed, so never 0 or 1).
pub fn key_rates(train: &[pianoroll::PianoRoll]) -> Vec<f64> {
    use pipeline::baseline::{key_counts, smoothed_rates};
    let (on, frames) = key_counts(train, true);
    smoothed_rates(&on, frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_only_keys_that_matter() {
        // One frame: keys 0 and 1 sound; the model says 1 and 2.
        let mut t = vec![0f32; KEY_COUNT];
        t[0] = 1.0;
        t[1] = 1.0;
        let mut l = vec![-10f32; KEY_COUNT];
        l[1] = 10.0;
        l[2] = 10.0;
        let targets = Tensor::from_slice(&t).reshape([1, 1, KEY_COUNT as i64]);
        let logits = Tensor::from_slice(&l).reshape([1, 1, KEY_COUNT as i64]);
        let mask = Tensor::from_slice(&[true]).reshape([1, 1]);
        let mut totals = Totals::default();
        totals.add(
            &logits,
            &logits.gt(0.0).to_kind(Kind::Float),
            &targets,
            &mask,
        );
        let scores = totals.scores();
        assert!((scores.frame_accuracy - 1.0 / 3.0).abs() < 1e-9);
        // Two confident mistakes (keys 0 and 2) cost about 10 nats each.
        assert!((scores.nll_per_frame - 20.0).abs() < 0.1, "{scores:?}");
    }
}
