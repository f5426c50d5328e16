//! Musical keys: read from key-signature events, or estimated with Krumhansl–Schmuckler
//! profiles, and the transposition that puts a key's tonic on C.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Major,
    Minor,
}

/// A key: tonic pitch class (0 = C .. 11 = B) and mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub tonic: u8,
    pub mode: Mode,
}

/// Where a piece's key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The file's first key-signature meta event.
    Signature,
    /// Krumhansl–Schmuckler estimate from the duration-weighted pitch-class histogram.
    Estimated,
    /// No signature and no notes to estimate from.
    Unknown,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Signature => "signature",
            KeySource::Estimated => "estimated",
            KeySource::Unknown => "unknown",
        }
    }
}

const PITCH_CLASS_NAMES: [&str; 12] = [
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
];

/// Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
const MAJOR_PROFILE: [f64; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
const MINOR_PROFILE: [f64; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];

impl Key {
    /// The key of a MIDI key-signature event: `sharps` is -7..=7 (negative = flats).
    /// `None` for values outside the MIDI specification.
    pub fn from_signature(sharps: i8, minor: bool) -> Option<Key> {
        if !(-7..=7).contains(&sharps) {
            return None;
        }
        // Each sharp moves the major tonic a fifth (7 semitones) up.
        let major_tonic = (i32::from(sharps) * 7).rem_euclid(12) as u8;
        Some(if minor {
            Key {
                tonic: (major_tonic + 9) % 12, // relative minor: a minor third below
                mode: Mode::Minor,
            }
        } else {
            Key {
                tonic: major_tonic,
                mode: Mode::Major,
            }
        })
    }

    /// Krumhansl–Schmuckler: the key whose rotated profile correlates best (Pearson) with the
    /// pitch-class histogram. `None` for an empty or flat histogram. Ties go to the lower tonic,
    /// major before minor, so the result is deterministic.
    pub fn estimate(histogram: &[f64; 12]) -> Option<Key> {
        let mut best: Option<(f64, Key)> = None;
        for mode in [Mode::Major, Mode::Minor] {
            let profile = match mode {
                Mode::Major => &MAJOR_PROFILE,
                Mode::Minor => &MINOR_PROFILE,
            };
            for tonic in 0..12u8 {
                let rotated: [f64; 12] =
                    std::array::from_fn(|pc| profile[(pc + 12 - usize::from(tonic)) % 12]);
                let r = pearson(histogram, &rotated)?;
                if best.is_none_or(|(best_r, _)| r > best_r) {
                    best = Some((r, Key { tonic, mode }));
                }
            }
        }
        best.map(|(_, key)| key)
    }

    /// Semitones that move this key's tonic onto C by the smallest interval, in -5..=+6
    /// (the convention of the published Nottingham rolls: F goes down 5, F# up 6).
    pub fn transposition_to_c(self) -> i8 {
        let up = (12 - i32::from(self.tonic)) % 12;
        (if up > 6 { up - 12 } else { up }) as i8
    }

    /// The key shifted by `semitones`.
    pub fn transposed(self, semitones: i8) -> Key {
        Key {
            tonic: (i32::from(self.tonic) + i32::from(semitones)).rem_euclid(12) as u8,
            mode: self.mode,
        }
    }

    /// Sharps (positive) or flats (negative) of this key's signature, for MIDI writers.
    pub fn signature_sharps(self) -> i8 {
        let major_tonic = match self.mode {
            Mode::Major => self.tonic,
            Mode::Minor => (self.tonic + 3) % 12,
        };
        // Inverse of "7 semitones per sharp": 7 * 7 = 49 = 1 (mod 12).
        let sharps = (i32::from(major_tonic) * 7).rem_euclid(12);
        (if sharps > 6 { sharps - 12 } else { sharps }) as i8
    }

    /// "D major", "Bb minor".
    pub fn name(self) -> String {
        let mode = match self.mode {
            Mode::Major => "major",
            Mode::Minor => "minor",
        };
        format!("{} {mode}", PITCH_CLASS_NAMES[usize::from(self.tonic % 12)])
    }
}

fn pearson(x: &[f64; 12], y: &[f64; 12]) -> Option<f64> {
    let mean = |v: &[f64; 12]| v.iter().sum::<f64>() / 12.0;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    let denominator = (sxx * syy).sqrt();
    (denominator > 0.0 && denominator.is_finite()).then(|| sxy / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_map_to_tonics() {
        let d_major = Key::from_signature(2, false).unwrap();
        assert_eq!(d_major.name(), "D major");
        assert_eq!(d_major.transposition_to_c(), -2);
        let e_minor = Key::from_signature(1, true).unwrap();
        assert_eq!(e_minor.name(), "E minor");
        assert_eq!(e_minor.transposition_to_c(), -4);
        let bb_major = Key::from_signature(-2, false).unwrap();
        assert_eq!(bb_major.name(), "Bb major");
        assert_eq!(bb_major.transposition_to_c(), 2);
        assert_eq!(Key::from_signature(8, false), None);
    }

    #[test]
    fn transposition_stays_in_minus5_plus6_and_lands_on_c() {
        for tonic in 0..12 {
            let key = Key {
                tonic,
                mode: Mode::Major,
            };
            let shift = key.transposition_to_c();
            assert!((-5..=6).contains(&shift), "{tonic} -> {shift}");
            assert_eq!(key.transposed(shift).tonic, 0);
            assert_eq!(
                Key::from_signature(key.signature_sharps(), false),
                Some(key)
            );
        }
    }

    #[test]
    fn estimate_finds_g_major_scale() {
        // G major scale, tonic and dominant weighted like a real tune.
        let mut histogram = [0.0; 12];
        for (pc, weight) in [
            (7, 4.0),
            (9, 1.0),
            (11, 2.0),
            (0, 1.0),
            (2, 3.0),
            (4, 1.0),
            (6, 1.0),
        ] {
            histogram[pc] = weight;
        }
        assert_eq!(
            Key::estimate(&histogram),
            Some(Key {
                tonic: 7,
                mode: Mode::Major
            })
        );
        assert_eq!(Key::estimate(&[0.0; 12]), None);
    }
}
