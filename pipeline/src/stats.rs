//! `pipeline stats`: what is in a dataset, read with polars.
//!
//! Besides the shape of each split (pieces, frames, length distribution, polyphony, silence and
//! the pitch histogram) it reports two constant-rate baselines, NLL per frame (nats, summed over
//! the 88 keys) of models that ignore the past entirely:
//! - *single rate*: every key on with the same probability, the training split's mean polyphony
//!   / 88 (about 16.2 on Nottingham);
//! - *key rates*: every key on at its own training-split rate (about 10 on Nottingham).
//!
//! Any trained next-frame model has to be far below both.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::baseline::{constant_rate_nll, smoothed_rates};
use crate::dataset::{DEFAULT_MAX_FILE_BYTES, Manifest, Split, read_midi_folder};
use crate::schema::{SchemaError, read_split};
use pianoroll::Transpose;
use pianoroll::music::{MusicComparison, MusicCounts};
use pianoroll::roll::{KEY_COUNT, LOWEST_PITCH};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Manifest(#[from] crate::dataset::BuildError),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Polars { path: PathBuf, error: PolarsError },
    #[error(transparent)]
    Split(#[from] SchemaError),
    #[error("--music: {0}")]
    MusicFolder(crate::dataset::BuildError),
    #[error("{dataset}: the {split} split has no pieces to measure against")]
    EmptySplit {
        dataset: PathBuf,
        split: &'static str,
    },
}

/// Distribution of piece lengths in frames.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LengthStats {
    pub min: u32,
    pub p25: u32,
    pub median: u32,
    pub p75: u32,
    pub max: u32,
    pub mean: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SplitStats {
    pub split: Split,
    pub pieces: usize,
    pub frames: u64,
    pub length: LengthStats,
    /// Mean number of keys down per frame.
    pub mean_polyphony: f64,
    /// Share of frames with no key down.
    pub silent_frame_share: f64,
    /// Frames in which each key (index 0 = MIDI 21) is down.
    pub pitch_histogram: Vec<u64>,
    /// NLL per frame (nats, summed over the 88 keys) with every key at the single training rate.
    pub baseline_single_rate_nll: f64,
    /// NLL per frame with every key at its own training rate.
    pub baseline_key_rates_nll: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DatasetStats {
    pub dataset: String,
    pub grid: String,
    pub transpose: String,
    /// Which data the baseline's key rates come from: "train", or "all splits" when train is
    /// empty.
    pub baseline_rates_from: String,
    pub splits: Vec<SplitStats>,
}

struct SplitCounts {
    lengths: Vec<u32>,
    frames: u64,
    silent: u64,
    active: u64,
    histogram: Vec<u64>,
}

fn polars_error(path: &Path) -> impl FnOnce(PolarsError) -> StatsError + '_ {
    move |error| StatsError::Polars {
        path: path.to_owned(),
        error,
    }
}

fn read_counts(path: &Path) -> Result<SplitCounts, StatsError> {
    let file = File::open(path).map_err(|error| StatsError::Io {
        path: path.to_owned(),
        error,
    })?;
    let df = IpcReader::new(file).finish().map_err(polars_error(path))?;
    let error = polars_error(path);
    let result = (|| -> PolarsResult<SplitCounts> {
        let mut lengths: Vec<u32> = df
            .column("num_frames")?
            .as_materialized_series()
            .u32()?
            .into_no_null_iter()
            .collect();
        lengths.sort_unstable();
        // One row per frame, then one row per sounding key.
        let keep_empty = ExplodeOptions {
            empty_as_null: false,
            keep_nulls: false,
        };
        let frames = df
            .column("roll")?
            .as_materialized_series()
            .explode(keep_empty)?;
        let polyphony = frames.list()?.lst_lengths();
        let silent = polyphony.into_no_null_iter().filter(|&n| n == 0).count() as u64;
        let pitches = frames.explode(keep_empty)?;
        let mut histogram = vec![0u64; KEY_COUNT];
        for pitch in pitches.u8()?.into_no_null_iter() {
            if let Some(count) = histogram.get_mut(usize::from(pitch.wrapping_sub(LOWEST_PITCH))) {
                *count += 1;
            }
        }
        Ok(SplitCounts {
            lengths,
            frames: frames.len() as u64,
            silent,
            active: pitches.len() as u64,
            histogram,
        })
    })();
    result.map_err(error)
}

fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Statistics of every split of the dataset at `dataset`.
pub fn dataset_stats(dataset: &Path) -> Result<DatasetStats, StatsError> {
    let manifest = Manifest::read(dataset)?;
    let mut counts = Vec::new();
    for split in Split::ALL {
        counts.push((split, read_counts(&dataset.join(split.file_name()))?));
    }
    // Rates from train, the only split a model may learn from; from all data if train is empty.
    let (rates_from, histogram, frames) = match counts
        .iter()
        .find(|(s, c)| *s == Split::Train && c.frames > 0)
    {
        Some((_, c)) => ("train", c.histogram.clone(), c.frames),
        None => {
            let mut histogram = vec![0; KEY_COUNT];
            let mut frames = 0;
            for (_, c) in &counts {
                frames += c.frames;
                histogram
                    .iter_mut()
                    .zip(&c.histogram)
                    .for_each(|(a, b)| *a += b);
            }
            ("all splits", histogram, frames)
        }
    };
    let key_rates = smoothed_rates(&histogram, frames);
    let single_rate =
        histogram.iter().sum::<u64>() as f64 / (frames.max(1) * KEY_COUNT as u64) as f64;
    let single_rates = vec![single_rate.clamp(1e-9, 1.0 - 1e-9); KEY_COUNT];
    let splits = counts
        .into_iter()
        .map(|(split, c)| {
            let pieces = c.lengths.len();
            SplitStats {
                split,
                pieces,
                frames: c.frames,
                length: LengthStats {
                    min: quantile(&c.lengths, 0.0),
                    p25: quantile(&c.lengths, 0.25),
                    median: quantile(&c.lengths, 0.5),
                    p75: quantile(&c.lengths, 0.75),
                    max: quantile(&c.lengths, 1.0),
                    mean: c.frames as f64 / pieces.max(1) as f64,
                },
                mean_polyphony: c.active as f64 / c.frames.max(1) as f64,
                silent_frame_share: c.silent as f64 / c.frames.max(1) as f64,
                baseline_single_rate_nll: constant_rate_nll(&single_rates, &c.histogram, c.frames),
                baseline_key_rates_nll: constant_rate_nll(&key_rates, &c.histogram, c.frames),
                pitch_histogram: c.histogram,
            }
        })
        .collect();
    Ok(DatasetStats {
        dataset: dataset.display().to_string(),
        grid: manifest.settings.grid.describe(),
        transpose: format!("{:?}", manifest.settings.transpose).to_lowercase(),
        baseline_rates_from: rates_from.to_owned(),
        splits,
    })
}

/// `pipeline stats DATASET --music FOLDER`: the music statistics ([`pianoroll::music`]) of a
/// folder of MIDI files (generated pieces) against one split of a dataset.
#[derive(Clone, Debug, Serialize)]
pub struct MusicReport {
    /// The folder of MIDI files.
    pub folder: String,
    pub dataset: String,
    pub split: Split,
    /// The dataset's grid, which the files were read on.
    pub grid: String,
    /// How the files were moved: the dataset's transposition, or `none` (`--as-written`).
    pub transpose: String,
    #[serde(flatten)]
    pub comparison: MusicComparison,
}

/// The music statistics of every MIDI file below `folder`, read on the grid of `dataset` (and
/// with its transposition to C unless `as_written`, for pieces already in the model's key
/// without a key signature to say so), against the pieces of `split` of `dataset`.
pub fn music_stats(
    folder: &Path,
    dataset: &Path,
    split: Split,
    as_written: bool,
) -> Result<MusicReport, StatsError> {
    let (mut settings, pieces) = read_split(&dataset.join(split.file_name()))?;
    if pieces.is_empty() {
        return Err(StatsError::EmptySplit {
            dataset: dataset.to_owned(),
            split: split.as_str(),
        });
    }
    if as_written {
        settings.transpose = Transpose::None;
    }
    let files = read_midi_folder(folder, &settings, DEFAULT_MAX_FILE_BYTES)
        .map_err(StatsError::MusicFolder)?;
    let samples = MusicCounts::of(files.iter().map(|(_, roll)| roll));
    let reference = MusicCounts::of(pieces.iter().map(|p| &p.roll));
    Ok(MusicReport {
        folder: folder.display().to_string(),
        dataset: dataset.display().to_string(),
        split,
        grid: settings.grid.describe(),
        transpose: format!("{:?}", settings.transpose).to_lowercase(),
        comparison: MusicComparison::new(&samples, &reference),
    })
}

impl MusicReport {
    /// The human table of `pipeline stats --music`.
    pub fn table(&self) -> String {
        format!(
            "{} against {} ({} split), grid {}, files read with transpose {}\n\n{}",
            self.folder,
            self.dataset,
            self.split.as_str(),
            self.grid,
            self.transpose,
            self.comparison.table("MIDI files", self.split.as_str())
        )
    }
}

const NOTE_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

/// "C4" for MIDI 60.
pub fn pitch_name(pitch: u8) -> String {
    format!(
        "{}{}",
        NOTE_NAMES[usize::from(pitch % 12)],
        i32::from(pitch) / 12 - 1
    )
}

impl DatasetStats {
    /// The human table of `pipeline stats`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}  (grid {}, transpose {})\n\n",
            self.dataset, self.grid, self.transpose
        );
        out += &format!(
            "{:<6} {:>7} {:>9} {:>28} {:>10} {:>8} {:>12} {:>12}\n",
            "split",
            "pieces",
            "frames",
            "length min/p25/med/p75/max",
            "polyphony",
            "silent",
            "NLL 1 rate",
            "NLL 88 rates"
        );
        for s in &self.splits {
            let l = &s.length;
            out += &format!(
                "{:<6} {:>7} {:>9} {:>28} {:>10.2} {:>7.1}% {:>12.2} {:>12.2}\n",
                s.split.as_str(),
                s.pieces,
                s.frames,
                format!("{}/{}/{}/{}/{}", l.min, l.p25, l.median, l.p75, l.max),
                s.mean_polyphony,
                100.0 * s.silent_frame_share,
                s.baseline_single_rate_nll,
                s.baseline_key_rates_nll
            );
        }
        out += &format!(
            "\nconstant-rate baselines, nats per frame summed over 88 keys, rates from {}:\n\
             NLL 1 rate = every key at the mean rate; NLL 88 rates = each key at its own rate (add-1/2 smoothed)\n\n",
            self.baseline_rates_from
        );
        let mut histogram = vec![0u64; KEY_COUNT];
        for s in &self.splits {
            histogram
                .iter_mut()
                .zip(&s.pitch_histogram)
                .for_each(|(a, b)| *a += b);
        }
        let total: u64 = histogram.iter().sum();
        let peak = histogram.iter().copied().max().unwrap_or(0).max(1);
        out += "pitch histogram (frames a key is down, all splits):\n";
        let used: Vec<usize> = (0..KEY_COUNT).filter(|&k| histogram[k] > 0).collect();
        if let (Some(&first), Some(&last)) = (used.first(), used.last()) {
            for key in (first..=last).rev() {
                let pitch = LOWEST_PITCH + key as u8;
                let bar = "#".repeat((histogram[key] * 50).div_ceil(peak) as usize);
                out += &format!(
                    "{:>4} {:>3} {:>6.2}% {bar}\n",
                    pitch_name(pitch),
                    pitch,
                    100.0 * histogram[key] as f64 / total.max(1) as f64
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pitch_names() {
        assert_eq!(pitch_name(60), "C4");
        assert_eq!(pitch_name(21), "A0");
        assert_eq!(pitch_name(108), "C8");
    }
}
