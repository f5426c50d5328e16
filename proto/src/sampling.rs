//! The random numbers a generation samples with: one uniform number per key and frame, drawn
//! from a ChaCha8 generator seeded with the request's seed.
//!
//! The step graph decides key k on when `uniform[k]` is below the model's probability for it
//! (see [`crate::card`]), so the seed, the model, the primer and the temperature fix the music.
//! The server and `trainer sample` both draw here, which is why they produce the same piece for
//! the same request. The numbers are multiples of 2⁻²⁴ in [0, 1): exactly representable in f32,
//! the graph's type, so no rounding stands between a draw and the comparison.

use pianoroll::Frame;
use pianoroll::melody::Constraint;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// A generation's stream of uniforms: 88 per sampled frame (always all 88, so a frame's draws
/// do not depend on what earlier frames held).
#[derive(Clone, Debug)]
pub struct Uniforms(ChaCha8Rng);

impl Uniforms {
    pub fn new(seed: u64) -> Uniforms {
        Uniforms(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Fill `keys` (one sampled frame's row) with the next uniforms.
    pub fn fill(&mut self, keys: &mut [f32]) {
        for key in keys {
            *key = (self.0.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        }
    }
}

/// The frames a generation feeds the model before it samples its first: the primer, after one
/// silent frame for a model trained with a silent start (card field `silent_start`, run config
/// `silent_start`), which saw one before every piece; without a primer, just the silent frame.
/// The server and `trainer sample` both start here.
pub fn start_frames(primer: &[Frame], silent_start: bool) -> Vec<Frame> {
    if silent_start || primer.is_empty() {
        std::iter::once(Frame::SILENT)
            .chain(primer.iter().copied())
            .collect()
    } else {
        primer.to_vec()
    }
}

/// Force the keys of `constraint` in one frame's uniforms `keys` (drawn first, so the stream
/// stays the seed's): 0 sounds a key and 1 silences it whatever the model's probability, since
/// the graph compares in logit space, where they are −∞ and +∞ (`logit > T · ln(u / (1 − u))`).
/// A NADE head conditions the keys it decides later on the forced ones, as on any decision.
pub fn constrain(keys: &mut [f32], constraint: Constraint) {
    for key in constraint.on.keys() {
        keys[key] = 0.0;
    }
    for key in constraint.off.keys() {
        keys[key] = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constraint_sets_its_keys_uniforms_to_0_and_1_and_leaves_the_rest() {
        let mut row = [0.5f32; 88];
        let mut on = pianoroll::Frame::SILENT;
        on.insert(40);
        constrain(
            &mut row,
            Constraint {
                on,
                off: pianoroll::Frame::keys_from(41),
            },
        );
        assert_eq!(row[40], 0.0);
        assert!(row[41..].iter().all(|&u| u == 1.0));
        assert!(row[..40].iter().all(|&u| u == 0.5));
    }

    #[test]
    fn uniforms_are_in_the_unit_interval_and_fixed_by_the_seed() {
        let draw = |seed| {
            let mut row = vec![0f32; 88 * 50];
            Uniforms::new(seed).fill(&mut row);
            row
        };
        let row = draw(7);
        assert!(row.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = row.iter().map(|&u| f64::from(u)).sum::<f64>() / row.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_eq!(row, draw(7));
        assert_ne!(row, draw(8));
        // Drawing a frame at a time is the same stream as drawing them all at once.
        let mut uniforms = Uniforms::new(7);
        let mut frame = [0f32; 88];
        uniforms.fill(&mut frame);
        uniforms.fill(&mut frame);
        assert_eq!(frame[..], row[88..176]);
    }
}
