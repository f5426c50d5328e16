//! A piece's setting, what it carries besides its notes: its key, meter and tempo; and how the
//! setting travels from a primer to the piece a model writes.
//!
//! Models trained on rolls transposed to C work in C: a primer in D is read a tone down
//! ([`crate::midi`]), continued in C, and the piece is moved back up by the same tone and
//! written with the primer's key signature, time signature and tempo, so the primer's own
//! notes come back at their pitches. What a person asks for (a key, a meter, a tempo) overrides
//! what the primer says; without a primer a piece is in C major, 4/4, at the writer's tempo.

use crate::grid::Grid;
use crate::key::{Key, KeyName, Mode};
use crate::meter::{Bars, Meter};
use crate::midi::{MidiWriteOptions, Piece};
use crate::roll::Frame;

/// What a written piece carries besides its notes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Setting {
    /// The key signature, and the key the notes are moved to.
    pub key: Key,
    pub meter: Meter,
    /// Quarter notes per minute on a beat grid (`None`: the writer's 120).
    pub tempo_bpm: Option<f64>,
}

impl Default for Setting {
    fn default() -> Setting {
        Setting {
            key: Key::C_MAJOR,
            meter: Meter::COMMON,
            tempo_bpm: None,
        }
    }
}

/// What a person asked a piece to be; each overrides the primer's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Asked {
    /// Without a mode, the primer's (major without a primer).
    pub key: Option<KeyName>,
    pub meter: Option<Meter>,
    pub tempo_bpm: Option<f64>,
}

/// How the frames a model works with become the piece written: every frame moved by `shift`
/// semitones, the file written with `setting`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundTrip {
    pub setting: Setting,
    /// Semitones from the model's frames to the written piece (notes moved off the keyboard
    /// are dropped, as in any transposition).
    pub shift: i8,
}

impl Default for RoundTrip {
    fn default() -> RoundTrip {
        RoundTrip::new(None, &Asked::default()).expect("nothing asked: C major, as the frames")
    }
}

/// A key asked for that the model's frames cannot be written in.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "key: {asked} is {asked_mode}, but the model's frames are {frames_mode} (the primer's mode, \
     major without a primer); moving them would not change their mode: ask for a {frames_mode} \
     key, or give a {asked_mode} primer"
)]
pub struct ModeMismatch {
    pub asked: String,
    pub asked_mode: &'static str,
    pub frames_mode: &'static str,
}

impl RoundTrip {
    /// The round trip of a piece continuing `primer` (as [`crate::read_midi`] read it for the
    /// model; `None` when there is no MIDI primer: the model's frames are then taken to be in
    /// C, as a model trained on rolls in C writes them) with what was `asked`.
    ///
    /// A key of the other mode than the frames' is refused: transposing cannot turn major
    /// frames minor, and a minor signature over them would misname the piece.
    pub fn new(primer: Option<&Piece>, asked: &Asked) -> Result<RoundTrip, ModeMismatch> {
        let written = primer.and_then(|p| p.key);
        // The key the model's frames are in: the primer's, moved as the reader moved it.
        let frames_key = match (primer, written) {
            (Some(primer), Some(key)) => key.transposed(primer.transpose),
            _ => Key::C_MAJOR,
        };
        let mode = written.map_or(Mode::Major, |k| k.mode);
        let key = asked
            .key
            .map(|name| name.key(mode))
            .or(written)
            .unwrap_or(Key::C_MAJOR);
        if key.mode != frames_key.mode {
            let mode_name = |mode| match mode {
                Mode::Major => "major",
                Mode::Minor => "minor",
            };
            return Err(ModeMismatch {
                asked: key.to_string(),
                asked_mode: mode_name(key.mode),
                frames_mode: mode_name(frames_key.mode),
            });
        }
        Ok(RoundTrip {
            setting: Setting {
                key,
                meter: asked
                    .meter
                    .or(primer.and_then(|p| p.meter))
                    .unwrap_or(Meter::COMMON),
                tempo_bpm: asked.tempo_bpm.or(primer.and_then(|p| p.tempo_bpm)),
            },
            shift: frames_key.shift_to(key),
        })
    }

    /// One of the model's frames as written.
    pub fn frame(&self, frame: Frame) -> Frame {
        frame.shifted(i32::from(self.shift))
    }

    /// The model's frames as written.
    pub fn frames(&self, frames: &[Frame]) -> Vec<Frame> {
        frames.iter().map(|&f| self.frame(f)).collect()
    }

    /// What [`crate::write_midi`] writes besides the (already moved) notes.
    pub fn midi_options<'a>(&self, title: Option<&'a str>) -> MidiWriteOptions<'a> {
        MidiWriteOptions {
            tempo_bpm: self.setting.tempo_bpm,
            title,
            key: Some(self.setting.key),
            meter: Some(self.setting.meter),
        }
    }

    /// Where the piece's bars start on `grid`, for its picture.
    pub fn bars(&self, grid: Grid) -> Bars {
        self.setting.meter.bars(grid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{RollSettings, Transpose};

    /// A D major, 6/8, 100 bpm primer: D4 then F#4 then A4, a dotted quarter each.
    fn d_major_primer() -> Vec<u8> {
        use pianoroll_tests::smf::*;
        let tempo = 600_000u32.to_be_bytes();
        single_track(&[
            (0, &[0xff, 0x51, 3, tempo[1], tempo[2], tempo[3]]),
            (0, &[0xff, 0x59, 2, 2, 0]),
            (0, &[0xff, 0x58, 4, 6, 3, 36, 8]),
            (0, &note_on(62)),
            (720, &note_off(62)),
            (0, &note_on(66)),
            (720, &note_off(66)),
            (0, &note_on(69)),
            (720, &note_off(69)),
        ])
    }

    #[test]
    fn a_primer_comes_back_in_its_key_meter_and_tempo() {
        let bytes = d_major_primer();
        let piece = crate::read_midi(&bytes, &RollSettings::benchmark()).unwrap();
        assert_eq!(piece.transpose, -2);
        assert_eq!(piece.meter, Some(Meter::new(6, 8).unwrap()));
        assert!((piece.tempo_bpm.unwrap() - 100.0).abs() < 1e-9);
        let trip = RoundTrip::new(Some(&piece), &Asked::default()).unwrap();
        assert_eq!(trip.setting.key.name(), "D major");
        assert_eq!(trip.setting.meter.to_string(), "6/8");
        assert_eq!(trip.shift, 2);
        // The primer's frames as the model saw them (in C) come back at their own pitches.
        let as_is = RollSettings {
            transpose: Transpose::None,
            ..RollSettings::benchmark()
        };
        let original = crate::read_midi(&bytes, &as_is).unwrap();
        assert_eq!(trip.frames(piece.roll.frames()), original.roll.frames());

        // Written and read back: the same signatures and tempo, the same notes.
        let roll = crate::PianoRoll::from_frames(trip.frames(piece.roll.frames()));
        let grid = RollSettings::benchmark().grid;
        let written = crate::write_midi(&roll, grid, &trip.midi_options(None));
        let back = crate::read_midi(&written, &as_is).unwrap();
        assert_eq!(back.roll, original.roll);
        assert_eq!(back.key, piece.key);
        assert_eq!(back.key_source, crate::key::KeySource::Signature);
        assert_eq!(back.meter, piece.meter);
        assert!((back.tempo_bpm.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(trip.bars(grid).whole_frames(), Some(6));
    }

    #[test]
    fn asking_overrides_the_primer_and_sets_a_piece_without_one() {
        let piece = crate::read_midi(&d_major_primer(), &RollSettings::benchmark()).unwrap();
        let asked = Asked {
            key: Some("G".parse().unwrap()),
            meter: Some("3/4".parse().unwrap()),
            tempo_bpm: Some(90.0),
        };
        let trip = RoundTrip::new(Some(&piece), &asked).unwrap();
        assert_eq!(trip.setting.key.name(), "G major");
        assert_eq!(
            trip.shift, -5,
            "G is C moved down a fourth, as the reader moves it"
        );
        assert_eq!(trip.setting.meter.to_string(), "3/4");
        assert_eq!(trip.setting.tempo_bpm, Some(90.0));

        let plain = RoundTrip::default();
        assert_eq!(plain.setting, Setting::default());
        assert_eq!(plain.shift, 0);
        let d = RoundTrip::new(
            None,
            &Asked {
                key: Some("D".parse().unwrap()),
                ..Asked::default()
            },
        )
        .unwrap();
        assert_eq!((d.setting.key.name(), d.shift), ("D major".to_owned(), 2));
        // Major frames cannot be written as a minor piece (nor the other way): refused, named.
        let minor = Asked {
            key: Some("Dm".parse().unwrap()),
            ..Asked::default()
        };
        let refused = RoundTrip::new(None, &minor).unwrap_err();
        assert_eq!(
            (refused.asked_mode, refused.frames_mode),
            ("minor", "major")
        );
        assert!(
            refused.to_string().starts_with("key: D minor is minor"),
            "{refused}"
        );
        assert!(RoundTrip::new(Some(&piece), &minor).is_err());
    }

    /// A model that keeps keys as written works in the primer's key: nothing moves, and an
    /// asked key moves the piece the short way from the primer's.
    #[test]
    fn untransposed_models_keep_the_primers_key() {
        let settings = RollSettings {
            transpose: Transpose::None,
            ..RollSettings::benchmark()
        };
        let piece = crate::read_midi(&d_major_primer(), &settings).unwrap();
        assert_eq!(
            RoundTrip::new(Some(&piece), &Asked::default())
                .unwrap()
                .shift,
            0
        );
        let e = Asked {
            key: Some("E".parse().unwrap()),
            ..Asked::default()
        };
        assert_eq!(RoundTrip::new(Some(&piece), &e).unwrap().shift, 2);
    }
}
