//! From a pipeline dataset to padded next-frame batches.
//!
//! A piece of `n` frames gives `n − 1` predictions: input frames `0..n−1`, target frames
//! `1..n`. Pieces are grouped by length (sorted, then cut into batches of neighbours) so that
//! little padding is needed; padding goes at the end and a mask marks the real positions, so a
//! recurrent model never sees padding before real frames. Shuffling reorders whole batches,
//! from a seed.

use std::path::Path;

use pianoroll::{KEY_COUNT, PianoRoll, RollSettings};
use pipeline::dataset::Split;
use pipeline::schema::read_split;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Read(#[from] pipeline::schema::SchemaError),
    #[error(
        "{path}: made on grid {found} (transpose {found_transpose:?}), but this run uses grid {expected} (transpose {expected_transpose:?})"
    )]
    WrongGrid {
        path: String,
        found: String,
        found_transpose: pianoroll::Transpose,
        expected: String,
        expected_transpose: pianoroll::Transpose,
    },
    #[error("{0}: no piece has two or more frames, so there is nothing to predict")]
    Empty(String),
}

/// The rolls of one split.
pub struct SplitData {
    pub split: Split,
    pub settings: RollSettings,
    pub rolls: Vec<PianoRoll>,
}

impl SplitData {
    /// Read `split` of the dataset at `dataset`; with `expected`, refuse a dataset made on
    /// another grid or transposition.
    pub fn load(
        dataset: &Path,
        split: Split,
        expected: Option<&RollSettings>,
    ) -> Result<SplitData, DataError> {
        let path = dataset.join(split.file_name());
        let (settings, pieces) = read_split(&path)?;
        if let Some(expected) = expected
            && (expected.grid != settings.grid || expected.transpose != settings.transpose)
        {
            return Err(DataError::WrongGrid {
                path: path.display().to_string(),
                found: settings.grid.describe(),
                found_transpose: settings.transpose,
                expected: expected.grid.describe(),
                expected_transpose: expected.transpose,
            });
        }
        let rolls: Vec<PianoRoll> = pieces
            .into_iter()
            .map(|p| p.roll)
            .filter(|r| r.len() >= 2)
            .collect();
        if rolls.is_empty() {
            return Err(DataError::Empty(path.display().to_string()));
        }
        Ok(SplitData {
            split,
            settings,
            rolls,
        })
    }

    /// Frames the models predict: every frame but each piece's first.
    pub fn predicted_frames(&self) -> usize {
        self.rolls.iter().map(|r| r.len() - 1).sum()
    }
}

/// SplitMix64: a small, fast, seedable generator, so shuffles are the same on every machine.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A whole number of semitones, uniform in `-k..=k`: one piece's transposition
    /// augmentation.
    pub fn semitones(&mut self, k: u8) -> i32 {
        let k = i32::from(k);
        (self.next_u64() % (2 * k as u64 + 1)) as i32 - k
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Indices of the pieces in each batch: neighbours in length order, batches in shuffled order
/// when `rng` is given, in length order otherwise.
pub fn plan_batches(
    rolls: &[PianoRoll],
    batch_size: usize,
    rng: Option<&mut SplitMix64>,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..rolls.len()).collect();
    order.sort_by_key(|&i| (rolls[i].len(), i));
    let mut batches: Vec<Vec<usize>> = order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    if let Some(rng) = rng {
        rng.shuffle(&mut batches);
    }
    batches
}

/// A padded batch: `inputs` and `targets` [B, T, 88] (0/1), `mask` [B, T] (true = real).
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    pub mask: Tensor,
}

impl Batch {
    /// Each piece's frames as inputs, each followed by the next as its target. With
    /// `silent_start` ([`crate::config::TrainConfig::silent_start`]) a silent input comes
    /// first, so step 0 predicts the piece's first frame and every piece has one step more.
    pub fn new(rolls: &[&PianoRoll], silent_start: bool, device: Device) -> Batch {
        let lead = usize::from(silent_start);
        let b = rolls.len();
        let t = rolls.iter().map(|r| r.len() - 1 + lead).max().unwrap_or(0);
        let keys = KEY_COUNT;
        let mut inputs = vec![0f32; b * t * keys];
        let mut targets = vec![0f32; b * t * keys];
        let mut mask = vec![false; b * t];
        for (row, roll) in rolls.iter().enumerate() {
            let frames = roll.frames();
            for step in 0..frames.len() - 1 + lead {
                let at = (row * t + step) * keys;
                let target = step + 1 - lead;
                // The frame before the target; none before the first (the silent start).
                if let Some(before) = target.checked_sub(1) {
                    for key in frames[before].keys() {
                        inputs[at + key] = 1.0;
                    }
                }
                for key in frames[target].keys() {
                    targets[at + key] = 1.0;
                }
                mask[row * t + step] = true;
            }
        }
        let shape = [b as i64, t as i64, keys as i64];
        Batch {
            inputs: Tensor::from_slice(&inputs).reshape(shape).to_device(device),
            targets: Tensor::from_slice(&targets)
                .reshape(shape)
                .to_device(device),
            mask: Tensor::from_slice(&mask)
                .reshape([b as i64, t as i64])
                .to_device(device),
        }
    }

    pub fn steps(&self) -> i64 {
        self.mask.size()[1]
    }

    /// The steps the scores count: all real ones, but with `silent_start` not step 0 (each
    /// piece's first frame, which a model without it never predicts), so that valid and test
    /// NLL count the same frames either way.
    pub fn scored(&self, silent_start: bool) -> Tensor {
        let scored = self.mask.copy();
        if silent_start && self.steps() > 0 {
            let _ = scored.narrow(1, 0, 1).fill_(0);
        }
        scored
    }

    /// Time steps `start .. start + len` of the batch (truncated backpropagation through time).
    pub fn window(&self, start: i64, len: i64) -> Batch {
        Batch {
            inputs: self.inputs.narrow(1, start, len),
            targets: self.targets.narrow(1, start, len),
            mask: self.mask.narrow(1, start, len),
        }
    }

    /// Number of real (predicted) positions.
    pub fn frames(&self) -> i64 {
        self.mask
            .to_kind(Kind::Int64)
            .sum(Kind::Int64)
            .int64_value(&[])
    }
}

/// Note dropout: silence each sounding key of the 0/1 `inputs` with probability `p`, drawing
/// from libtorch's generator. A regulariser for training only: the model must predict the whole
/// next frame from a partly missing present, so it cannot lean on copying the frame it was given.
/// The targets stay whole. Unlike dropout there is no rescaling: the inputs stay binary.
pub fn drop_notes(inputs: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 {
        return inputs.shallow_clone();
    }
    inputs * Tensor::rand_like(inputs).ge(p).to_kind(inputs.kind())
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn note_dropout_only_removes_notes_at_its_rate() {
        use tch::{Device, Kind, Tensor};
        tch::manual_seed(11);
        let inputs = Tensor::rand([4, 500, 88], (Kind::Float, Device::Cpu))
            .lt(0.3)
            .to_kind(Kind::Float);
        let on = inputs.sum(Kind::Float).double_value(&[]);
        assert!(super::drop_notes(&inputs, 0.0).equal(&inputs));
        let kept = super::drop_notes(&inputs, 0.25);
        // Nothing appears that was not there, and about a quarter of the notes go.
        let added = (&kept - &inputs)
            .clamp_min(0.0)
            .sum(Kind::Float)
            .double_value(&[]);
        assert_eq!(added, 0.0);
        let dropped = 1.0 - kept.sum(Kind::Float).double_value(&[]) / on;
        assert!((dropped - 0.25).abs() < 0.01, "dropped {dropped}");
    }

    #[test]
    fn transpositions_cover_the_range_evenly() {
        let mut rng = SplitMix64(5);
        let mut counts = [0usize; 7];
        for _ in 0..7000 {
            let s = rng.semitones(3);
            assert!((-3..=3).contains(&s), "{s}");
            counts[(s + 3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(rng.semitones(0), 0);
    }

    /// Without the silent start, step i feeds frame i and predicts frame i + 1; with it, step
    /// 0 feeds silence and predicts frame 0, every later step one frame on, and the scores
    /// leave step 0 out, so both count the same predictions. Padding stays masked.
    #[test]
    fn the_silent_start_adds_one_step_that_predicts_the_first_frame() {
        use pianoroll::{Frame, LOWEST_PITCH, PianoRoll};
        use tch::{Device, Kind};
        let frame = |pitch: u8| Frame::from_pitches([pitch]).unwrap();
        let (a, b, c) = (frame(60), frame(64), frame(67));
        let long = PianoRoll::from_frames(vec![a, b, c]);
        let short = PianoRoll::from_frames(vec![c, a]);
        let key = |f: &Frame| f.keys().next().unwrap() as i64;
        let sounding = |t: &tch::Tensor, row: i64, step: i64| -> Vec<i64> {
            let keys = t.get(row).get(step).nonzero().reshape([-1]);
            Vec::<i64>::try_from(keys).unwrap()
        };
        let count = |m: &tch::Tensor| m.sum(Kind::Int64).int64_value(&[]);
        assert_eq!(key(&a), i64::from(60 - LOWEST_PITCH));

        let plain = super::Batch::new(&[&long, &short], false, Device::Cpu);
        assert_eq!(plain.steps(), 2);
        assert_eq!(sounding(&plain.inputs, 0, 0), [key(&a)]);
        assert_eq!(sounding(&plain.targets, 0, 0), [key(&b)]);
        assert_eq!(sounding(&plain.targets, 1, 0), [key(&a)]);
        assert_eq!(count(&plain.mask), 3);
        assert!(plain.scored(false).equal(&plain.mask));

        let silent = super::Batch::new(&[&long, &short], true, Device::Cpu);
        assert_eq!(silent.steps(), 3);
        assert_eq!(sounding(&silent.inputs, 0, 0), Vec::<i64>::new());
        assert_eq!(sounding(&silent.targets, 0, 0), [key(&a)]);
        assert_eq!(sounding(&silent.inputs, 0, 1), [key(&a)]);
        assert_eq!(sounding(&silent.targets, 0, 2), [key(&c)]);
        assert_eq!(sounding(&silent.inputs, 1, 0), Vec::<i64>::new());
        assert_eq!(sounding(&silent.targets, 1, 0), [key(&c)]);
        assert_eq!(sounding(&silent.targets, 1, 1), [key(&a)]);
        assert_eq!(count(&silent.mask), 5);
        assert!(
            !bool::try_from(silent.mask.get(1).get(2)).unwrap(),
            "padding"
        );
        let scored = silent.scored(true);
        assert_eq!(count(&scored), 3);
        assert!(!bool::try_from(scored.get(0).get(0)).unwrap());
        assert!(bool::try_from(scored.get(0).get(1)).unwrap());
    }
}
