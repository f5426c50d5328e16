//! Constant-rate baselines: every key on with a fixed probability, whatever came before. The
//! NLL per frame of such a model is the bar any next-frame model must clear; `pipeline stats`
//! reports it per split and the trainer next to its test scores.

use pianoroll::roll::{KEY_COUNT, PianoRoll};

/// Frames in which each key is on, and the number of frames, over `rolls`; with
/// `skip_first`, each roll's first frame is left out (it is never predicted).
pub fn key_counts(rolls: &[PianoRoll], skip_first: bool) -> ([u64; KEY_COUNT], u64) {
    let mut on = [0u64; KEY_COUNT];
    let mut frames = 0;
    for roll in rolls {
        let skip = usize::from(skip_first).min(roll.len());
        for frame in &roll.frames()[skip..] {
            frames += 1;
            frame.keys().for_each(|k| on[k] += 1);
        }
    }
    (on, frames)
}

/// Per-key rates with add-½ smoothing, so a key never seen in training costs a finite amount.
pub fn smoothed_rates(counts: &[u64], frames: u64) -> Vec<f64> {
    counts
        .iter()
        .map(|&on| (on as f64 + 0.5) / (frames as f64 + 1.0))
        .collect()
}

/// Bernoulli NLL per frame (nats, summed over keys) of `counts` (frames each key is on, out of
/// `frames`) under `rates`.
pub fn constant_rate_nll(rates: &[f64], counts: &[u64], frames: u64) -> f64 {
    if frames == 0 {
        return 0.0;
    }
    let total: f64 = rates
        .iter()
        .zip(counts)
        .map(|(&p, &on)| -(on as f64 * p.ln() + (frames - on) as f64 * (1.0 - p).ln()))
        .sum();
    total / frames as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_nll_of_a_fair_coin_key_is_ln2() {
        // One key on half the time, at rate 1/2: ln 2 per frame; keys never on add ~0.
        let mut rates = vec![1e-12; KEY_COUNT];
        rates[0] = 0.5;
        let mut counts = vec![0; KEY_COUNT];
        counts[0] = 50;
        let nll = constant_rate_nll(&rates, &counts, 100);
        assert!((nll - std::f64::consts::LN_2).abs() < 1e-6, "{nll}");
    }
}
