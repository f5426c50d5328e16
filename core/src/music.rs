//! Music statistics of a collection of rolls: what a likelihood does not say, how close a
//! model's music is to the data. One home for their definitions; `pipeline stats --music` and
//! `trainer eval --music` print them.
//!
//! Every statistic is pooled over the collection's frames (a long piece weighs more than a short
//! one), and each ratio is `None` when nothing qualifies for its denominator:
//!
//! - **polyphony**: the mean number of sounding keys over the *sounding* frames (frames with at
//!   least one key down). Silent frames are left out so that rests do not lower it; how much is
//!   silent is the next statistic. (`pipeline stats`' `mean_polyphony` is over all frames.)
//! - **silent share**: frames with no key down / all frames.
//! - **chord share**: frames with 3 or more distinct pitch classes / all frames.
//! - **triad share**: among the frames with 3 or more distinct pitch classes, the share whose
//!   pitch-class set is contained in a major or minor triad (any of the 12 roots × 2
//!   qualities; octave doublings are the same pitch class). With 3 or more classes, contained
//!   in a triad means *is* that triad: C-E-G and C-E-G-C' fit, C-E-G-B♭ (a seventh chord),
//!   C-E-F♯ and C-E-G♯ (augmented) do not.
//! - **melody fit**: among the frames where the highest note sounds over at least one other
//!   pitch class (2 or more distinct classes), the share whose pitch-class set is contained in
//!   a major or minor triad, which then contains the highest note's class: how often the
//!   accompaniment's chord fits the melody note, taking the top line as the melody (as
//!   harmonising does). A bare fifth or third under the tune fits; a second or a tritone does
//!   not.
//! - **onsets per frame**: keys that sound in a frame and not in the frame before it (every key
//!   of a piece's first frame counts), summed and divided by all frames. A key held across
//!   frames is one onset; a key struck again after a silent frame is two.
//! - **pitch-class-set distance** between two collections: the total variation distance (half
//!   the L1 distance, 0 = the same distribution, 1 = no set in common) between the
//!   distributions of their sounding frames' 12-bit pitch-class sets. Silent frames are left
//!   out for the same reason as in polyphony: the silent share compares them on its own, and
//!   with them in, a collection with more rests would look harmonically farther away.

use serde::Serialize;

use crate::roll::{Frame, PianoRoll};

/// A set of pitch classes: bit `c` is pitch class `c` (0 = C, 1 = C♯, …, 11 = B).
pub type PitchClassSet = u16;

/// Number of distinct pitch-class sets (2^12).
const PITCH_CLASS_SETS: usize = 1 << 12;

/// The pitch classes of the keys down in `frame`.
pub fn pitch_class_set(frame: Frame) -> PitchClassSet {
    frame
        .pitches()
        .fold(0, |set, pitch| set | 1 << (pitch % 12))
}

/// The 24 major and minor triads as pitch-class sets: root, third (major 4 or minor 3
/// semitones up) and fifth (7 up).
const TRIADS: [PitchClassSet; 24] = {
    const fn at(root: usize, interval: usize) -> PitchClassSet {
        1 << ((root + interval) % 12)
    }
    let mut triads = [0; 24];
    let mut root = 0;
    while root < 12 {
        triads[2 * root] = at(root, 0) | at(root, 4) | at(root, 7);
        triads[2 * root + 1] = at(root, 0) | at(root, 3) | at(root, 7);
        root += 1;
    }
    triads
};

/// Whether every pitch class of `set` belongs to one major or minor triad.
pub fn fits_triad(set: PitchClassSet) -> bool {
    TRIADS.iter().any(|&triad| set & !triad == 0)
}

/// The counts the statistics are made of; collections add up piece by piece.
#[derive(Clone, PartialEq, Eq)]
pub struct MusicCounts {
    pieces: u64,
    frames: u64,
    silent_frames: u64,
    /// Keys down, summed over frames.
    keys: u64,
    onsets: u64,
    /// Frames with 3 or more distinct pitch classes.
    chord_frames: u64,
    /// Those of them whose set fits a major or minor triad.
    triad_frames: u64,
    /// Frames with 2 or more distinct pitch classes (the top note accompanied).
    accompanied_frames: u64,
    /// Those of them whose set fits a major or minor triad.
    fitting_frames: u64,
    /// Sounding frames per pitch-class set (index = the set); index 0 stays 0.
    pitch_class_sets: Vec<u64>,
}

impl Default for MusicCounts {
    fn default() -> MusicCounts {
        MusicCounts {
            pieces: 0,
            frames: 0,
            silent_frames: 0,
            keys: 0,
            onsets: 0,
            chord_frames: 0,
            triad_frames: 0,
            accompanied_frames: 0,
            fitting_frames: 0,
            pitch_class_sets: vec![0; PITCH_CLASS_SETS],
        }
    }
}

impl std::fmt::Debug for MusicCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MusicCounts")
            .field("pieces", &self.pieces)
            .field("frames", &self.frames)
            .field("silent_frames", &self.silent_frames)
            .field("keys", &self.keys)
            .field("onsets", &self.onsets)
            .field("chord_frames", &self.chord_frames)
            .field("triad_frames", &self.triad_frames)
            .field("accompanied_frames", &self.accompanied_frames)
            .field("fitting_frames", &self.fitting_frames)
            .finish_non_exhaustive()
    }
}

impl MusicCounts {
    /// The counts of `rolls`, each one piece.
    pub fn of<'a>(rolls: impl IntoIterator<Item = &'a PianoRoll>) -> MusicCounts {
        let mut counts = MusicCounts::default();
        rolls.into_iter().for_each(|roll| counts.add(roll));
        counts
    }

    /// Add one piece.
    pub fn add(&mut self, roll: &PianoRoll) {
        self.pieces += 1;
        let mut previous = Frame::SILENT;
        for &frame in roll.frames() {
            self.frames += 1;
            self.keys += frame.len() as u64;
            self.onsets += u64::from((frame.bits() & !previous.bits()).count_ones());
            previous = frame;
            if frame.is_empty() {
                self.silent_frames += 1;
                continue;
            }
            let set = pitch_class_set(frame);
            self.pitch_class_sets[usize::from(set)] += 1;
            if set.count_ones() >= 2 {
                self.accompanied_frames += 1;
                if fits_triad(set) {
                    self.fitting_frames += 1;
                }
            }
            if set.count_ones() >= 3 {
                self.chord_frames += 1;
                if fits_triad(set) {
                    self.triad_frames += 1;
                }
            }
        }
    }

    /// Sounding frames counted.
    fn sounding_frames(&self) -> u64 {
        self.frames - self.silent_frames
    }

    /// The statistics of the counted pieces (see the module's documentation).
    pub fn stats(&self) -> MusicStats {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        MusicStats {
            pieces: self.pieces,
            frames: self.frames,
            polyphony: ratio(self.keys, self.sounding_frames()),
            silent_share: ratio(self.silent_frames, self.frames),
            chord_share: ratio(self.chord_frames, self.frames),
            triad_share: ratio(self.triad_frames, self.chord_frames),
            melody_fit: ratio(self.fitting_frames, self.accompanied_frames),
            onsets_per_frame: ratio(self.onsets, self.frames),
        }
    }

    /// Total variation distance between the pitch-class-set distributions of the sounding
    /// frames of `self` and `other`; `None` when either has no sounding frame.
    pub fn pitch_class_set_distance(&self, other: &MusicCounts) -> Option<f64> {
        let (n, m) = (self.sounding_frames(), other.sounding_frames());
        if n == 0 || m == 0 {
            return None;
        }
        let (n, m) = (n as f64, m as f64);
        let l1: f64 = self
            .pitch_class_sets
            .iter()
            .zip(&other.pitch_class_sets)
            .map(|(&a, &b)| (a as f64 / n - b as f64 / m).abs())
            .sum();
        // Rounding can leave a hair above 1 for disjoint distributions.
        Some((l1 / 2.0).min(1.0))
    }
}

/// The statistics of one collection (defined in the module's documentation); a ratio is
/// `None` (JSON `null`) when its denominator is 0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MusicStats {
    pub pieces: u64,
    pub frames: u64,
    /// Mean keys down per sounding frame.
    pub polyphony: Option<f64>,
    /// Share of frames with no key down.
    pub silent_share: Option<f64>,
    /// Share of frames with 3 or more distinct pitch classes.
    pub chord_share: Option<f64>,
    /// Share of the frames with 3 or more pitch classes that are a major or minor triad.
    pub triad_share: Option<f64>,
    /// Share of the frames with 2 or more pitch classes whose classes fit one major or minor
    /// triad (with the top note's).
    pub melody_fit: Option<f64>,
    /// Keys that start sounding, per frame.
    pub onsets_per_frame: Option<f64>,
}

/// Two collections side by side: generated pieces and the data they are measured against.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MusicComparison {
    pub samples: MusicStats,
    pub reference: MusicStats,
    /// [`MusicCounts::pitch_class_set_distance`] between the two.
    pub pitch_class_set_distance: Option<f64>,
}

impl MusicComparison {
    pub fn new(samples: &MusicCounts, reference: &MusicCounts) -> MusicComparison {
        MusicComparison {
            samples: samples.stats(),
            reference: reference.stats(),
            pitch_class_set_distance: samples.pitch_class_set_distance(reference),
        }
    }

    /// The two rows as a table, labelled `samples` and `reference`, and the distance below.
    pub fn table(&self, samples: &str, reference: &str) -> String {
        let width = samples.len().max(reference.len()).max(10);
        let mut out = format!(
            "{:<width$} {:>6} {:>8} {:>9} {:>7} {:>7} {:>7} {:>10} {:>14}\n",
            "",
            "pieces",
            "frames",
            "polyphony",
            "silent",
            "chords",
            "triads",
            "melody fit",
            "onsets/frame"
        );
        let number = |x: Option<f64>, digits: usize| {
            x.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
        };
        let percent =
            |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{:.1}%", 100.0 * x));
        for (label, s) in [(samples, &self.samples), (reference, &self.reference)] {
            out += &format!(
                "{:<width$} {:>6} {:>8} {:>9} {:>7} {:>7} {:>7} {:>10} {:>14}\n",
                label,
                s.pieces,
                s.frames,
                number(s.polyphony, 2),
                percent(s.silent_share),
                percent(s.chord_share),
                percent(s.triad_share),
                percent(s.melody_fit),
                number(s.onsets_per_frame, 3),
            );
        }
        out += &format!(
            "pitch-class-set distance (total variation, sounding frames): {}\n\
             polyphony = keys per sounding frame; chords = frames of 3+ pitch classes; \
             triads = the share of those that are a major or minor triad; melody fit = the \
             share of frames of 2+ pitch classes that fit one triad (the top note's chord)\n",
            number(self.pitch_class_set_distance, 3)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pitches: &[u8]) -> Frame {
        Frame::from_pitches(pitches.iter().copied()).unwrap()
    }

    fn roll(frames: &[&[u8]]) -> PianoRoll {
        PianoRoll::from_frames(frames.iter().map(|f| frame(f)).collect())
    }

    fn set(pitches: &[u8]) -> PitchClassSet {
        pitch_class_set(frame(pitches))
    }

    #[test]
    fn pitch_classes_fold_octaves() {
        assert_eq!(set(&[60, 64, 67]), 1 | 1 << 4 | 1 << 7);
        assert_eq!(set(&[48, 60, 72]), 1);
        assert_eq!(set(&[21]), 1 << 9); // A0 is an A
        assert_eq!(set(&[]), 0);
    }

    #[test]
    fn major_and_minor_triads_fit_and_other_chords_do_not() {
        assert!(fits_triad(set(&[60, 64, 67]))); // C major
        assert!(fits_triad(set(&[48, 64, 67, 72]))); // C major, doubled
        assert!(fits_triad(set(&[57, 60, 64]))); // A minor
        assert!(fits_triad(set(&[66, 69, 73]))); // F# minor
        assert!(fits_triad(set(&[64, 67, 71]))); // E minor, first-inversion voicing
        assert!(!fits_triad(set(&[60, 64, 66]))); // C-E-F#
        assert!(!fits_triad(set(&[60, 64, 68]))); // augmented
        assert!(!fits_triad(set(&[59, 62, 65]))); // diminished
        assert!(!fits_triad(set(&[60, 64, 67, 70]))); // C7
        // Fewer classes fit whenever some triad holds them (the triad share never asks).
        assert!(fits_triad(set(&[60, 67])));
        assert!(!fits_triad(set(&[60, 61])));
    }

    #[test]
    fn statistics_of_a_hand_made_roll() {
        // C major | C major held + G | silent | C-E-F# | C E (two classes) | C7
        let piece = roll(&[
            &[60, 64, 67],
            &[60, 64, 67, 79],
            &[],
            &[60, 64, 66],
            &[48, 64],
            &[60, 64, 67, 70],
        ]);
        let stats = MusicCounts::of([&piece]).stats();
        assert_eq!((stats.pieces, stats.frames), (1, 6));
        // 3 + 4 + 3 + 2 + 4 keys over 5 sounding frames.
        assert_eq!(stats.polyphony, Some(16.0 / 5.0));
        assert_eq!(stats.silent_share, Some(1.0 / 6.0));
        // Frames of 3+ classes: 0, 1, 3, 5; triads among them: 0 and 1.
        assert_eq!(stats.chord_share, Some(4.0 / 6.0));
        assert_eq!(stats.triad_share, Some(2.0 / 4.0));
        // Frames of 2+ classes: 0, 1, 3, 4, 5; fitting one triad: 0, 1 and 4 (C-E).
        assert_eq!(stats.melody_fit, Some(3.0 / 5.0));
        // Onsets: 3 (the first frame's) + 1 (G5) + 0 + 3 (after the rest) + 1 (C3; E4 is
        // held) + 3 (C4, G4, Bb4; E4 still held).
        assert_eq!(stats.onsets_per_frame, Some(11.0 / 6.0));
    }

    #[test]
    fn collections_pool_frames_and_each_piece_starts_afresh() {
        let held = roll(&[&[60], &[60], &[60]]);
        let counts = MusicCounts::of([&held, &held]);
        let stats = counts.stats();
        assert_eq!((stats.pieces, stats.frames), (2, 6));
        // One onset per piece: the second piece's first frame counts though the first piece
        // ended on the same key.
        assert_eq!(stats.onsets_per_frame, Some(2.0 / 6.0));
        assert_eq!(stats.triad_share, None);
        assert_eq!(stats.polyphony, Some(1.0));
    }

    #[test]
    fn empty_and_silent_collections_have_no_ratios_to_give() {
        let empty = MusicCounts::default().stats();
        assert_eq!(empty.frames, 0);
        assert_eq!(
            (empty.polyphony, empty.silent_share, empty.onsets_per_frame),
            (None, None, None)
        );
        let silent = MusicCounts::of([&PianoRoll::silent(4)]);
        let stats = silent.stats();
        assert_eq!((stats.silent_share, stats.polyphony), (Some(1.0), None));
        assert_eq!(silent.pitch_class_set_distance(&silent), None);
    }

    #[test]
    fn total_variation_distance() {
        let c_major = roll(&[&[60, 64, 67], &[48, 64, 67]]);
        let a_minor = roll(&[&[57, 60, 64]]);
        let mixed = roll(&[&[60, 64, 67], &[57, 60, 64]]);
        let counts = |rolls: &[&PianoRoll]| MusicCounts::of(rolls.iter().copied());
        assert_eq!(
            counts(&[&c_major]).pitch_class_set_distance(&counts(&[&c_major])),
            Some(0.0)
        );
        assert_eq!(
            counts(&[&c_major]).pitch_class_set_distance(&counts(&[&a_minor])),
            Some(1.0)
        );
        // {C major: 1} against {C major: ½, A minor: ½}: ½ (|1 − ½| + |0 − ½|) = ½.
        assert_eq!(
            counts(&[&c_major]).pitch_class_set_distance(&counts(&[&mixed])),
            Some(0.5)
        );
        // Symmetric, and silent frames do not enter.
        let with_rests = roll(&[&[60, 64, 67], &[], &[], &[57, 60, 64]]);
        assert_eq!(
            counts(&[&mixed]).pitch_class_set_distance(&counts(&[&with_rests])),
            Some(0.0)
        );
        assert_eq!(
            counts(&[&mixed]).pitch_class_set_distance(&counts(&[&c_major])),
            Some(0.5)
        );
    }

    #[test]
    fn the_table_shows_both_rows_and_the_distance() {
        let c_major = roll(&[&[60, 64, 67], &[]]);
        let comparison =
            MusicComparison::new(&MusicCounts::of([&c_major]), &MusicCounts::default());
        let table = comparison.table("samples", "test split");
        assert!(table.contains("samples"), "{table}");
        assert!(table.contains("test split"), "{table}");
        assert!(table.contains("50.0%"), "{table}");
        assert!(
            table.contains("distance (total variation, sounding frames): -"),
            "{table}"
        );
    }
}
