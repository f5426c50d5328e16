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
    /// C major: the key of a piece that says nothing and is not read from a primer.
    pub const C_MAJOR: Key = Key {
        tonic: 0,
        mode: Mode::Major,
    };

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

    /// Semitones that move music in this key to `target`: this key's move to C, then the
    /// inverse of `target`'s, wrapped into -6..=+5. So a roll read in C from a primer in
    /// `target` (moved by `target.transposition_to_c()`) comes back to the primer's own pitches,
    /// whatever the key.
    pub fn shift_to(self, target: Key) -> i8 {
        let semitones =
            i32::from(self.transposition_to_c()) - i32::from(target.transposition_to_c());
        ((semitones + 6).rem_euclid(12) - 6) as i8
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

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A key as a person names it: a tonic, and a mode or not ("D", "F# minor", "Bbm"). Without a
/// mode the caller decides which (the primer's, else major): asking for "G" with a minor tune
/// means G minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyName {
    pub tonic: u8,
    pub mode: Option<Mode>,
}

/// Why a text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a key: a tonic A to G, then # or b or nothing, then major, minor (m) or \
     nothing, as D, F# minor, Bbm"
)]
pub struct KeyNameError(pub String);

impl KeyName {
    /// The key, `mode` where the name gives none.
    pub fn key(self, mode: Mode) -> Key {
        Key {
            tonic: self.tonic,
            mode: self.mode.unwrap_or(mode),
        }
    }
}

impl std::fmt::Display for KeyName {
    /// "D", "F# minor": what [`KeyName::from_str`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(PITCH_CLASS_NAMES[usize::from(self.tonic % 12)])?;
        match self.mode {
            None => Ok(()),
            Some(Mode::Major) => f.write_str(" major"),
            Some(Mode::Minor) => f.write_str(" minor"),
        }
    }
}

impl std::str::FromStr for KeyName {
    type Err = KeyNameError;

    fn from_str(text: &str) -> Result<KeyName, KeyNameError> {
        let error = || KeyNameError(text.to_owned());
        let mut chars = text.trim().chars();
        let natural: i32 = match chars.next().map(|c| c.to_ascii_uppercase()) {
            Some('C') => 0,
            Some('D') => 2,
            Some('E') => 4,
            Some('F') => 5,
            Some('G') => 7,
            Some('A') => 9,
            Some('B') => 11,
            _ => return Err(error()),
        };
        let rest = chars.as_str();
        let (alteration, rest) = match rest.chars().next() {
            Some('#' | '♯') => (1, &rest[rest.chars().next().map_or(0, char::len_utf8)..]),
            Some('b' | '♭') => (-1, &rest[rest.chars().next().map_or(0, char::len_utf8)..]),
            _ => (0, rest),
        };
        // "M" alone is major and "m" minor, as chord symbols write them; the words in any case.
        let mode = match rest.trim() {
            "" => None,
            "M" => Some(Mode::Major),
            "m" => Some(Mode::Minor),
            word => match word.to_ascii_lowercase().as_str() {
                "major" | "maj" => Some(Mode::Major),
                "minor" | "min" => Some(Mode::Minor),
                _ => return Err(error()),
            },
        };
        Ok(KeyName {
            tonic: (natural + alteration).rem_euclid(12) as u8,
            mode,
        })
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
    fn shifting_to_a_key_undoes_its_move_to_c() {
        for tonic in 0..12 {
            for mode in [Mode::Major, Mode::Minor] {
                let key = Key { tonic, mode };
                let home = Key { tonic: 0, mode };
                assert_eq!(home.shift_to(key), -key.transposition_to_c(), "{key}");
                assert_eq!(key.shift_to(key), 0);
            }
        }
        let f_sharp = Key {
            tonic: 6,
            mode: Mode::Major,
        };
        let f = Key {
            tonic: 5,
            mode: Mode::Major,
        };
        assert_eq!(f_sharp.shift_to(f), -1, "the short way, not through C");
        assert_eq!(f.shift_to(f_sharp), 1);
    }

    #[test]
    fn key_names_parse() {
        let parse = |text: &str| text.parse::<KeyName>().map(|n| n.key(Mode::Major).name());
        assert_eq!(parse("D").unwrap(), "D major");
        assert_eq!(parse("d").unwrap(), "D major");
        assert_eq!(parse("F# minor").unwrap(), "F# minor");
        assert_eq!(parse("Bbm").unwrap(), "Bb minor");
        assert_eq!(
            parse("DM").unwrap(),
            "D major",
            "M alone is major, as in chord symbols"
        );
        assert_eq!(parse("D MINOR").unwrap(), "D minor");
        assert_eq!(parse("bb").unwrap(), "Bb major");
        assert_eq!(parse("Eb major").unwrap(), "Eb major");
        assert_eq!(parse("Cb").unwrap(), "B major");
        for text in ["D", "F# minor", "Bb major", "Eb"] {
            assert_eq!(text.parse::<KeyName>().unwrap().to_string(), text);
        }
        let g: KeyName = "G".parse().unwrap();
        assert_eq!(g.mode, None);
        assert_eq!(g.key(Mode::Minor).name(), "G minor");
        for bad in ["", "H", "D dorian", "D##", "7"] {
            let error = bad.parse::<KeyName>().unwrap_err();
            assert!(error.to_string().contains("is not a key"), "{bad}: {error}");
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
