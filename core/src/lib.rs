//! The core every pianoroll crate shares, and the one home of
//! - the piano-roll type ([`PianoRoll`], [`Frame`]: 88 keys, MIDI 21..=108),
//! - the grids and transpositions ([`grid`], [`key`]),
//! - a melody's top line and the constraints that keep it on top while a model harmonises it
//!   ([`melody`]),
//! - meters ([`meter`]) and a piece's setting, its key, meter and tempo from a primer to the
//!   written piece ([`setting`]),
//! - the MIDI ↔ roll mapping ([`midi`]: the exact note → frame rule is documented there),
//! - the music statistics of a collection of rolls ([`music`]: polyphony, silence, triads,
//!   onsets, the distance between two collections' pitch-class sets),
//! - the roll → PNG and roll → WAV writers ([`render`], [`audio`]),
//! - atomic file and folder publishing for every output of the workspace ([`atomic`]),
//! - the start and end of every binary of the workspace ([`binary`], feature `binary`): logging
//!   and the error → exit code convention, so the three command-line tools behave alike.
//!
//! It does no I/O but what its writers and [`atomic`] are asked to do, and knows nothing of
//! datasets (the `pipeline` crate), models (`trainer`) or serving (`serve`): a server reads a
//! MIDI primer and writes music with it alone, without Arrow or polars.

pub mod atomic;
pub mod audio;
#[cfg(feature = "binary")]
pub mod binary;
pub mod grid;
pub mod key;
pub mod melody;
pub mod meter;
pub mod midi;
pub mod music;
pub mod render;
pub mod roll;
pub mod setting;

pub use grid::{Grid, RollSettings, Transpose};
pub use midi::{MidiError, Piece, read_midi, write_midi};
pub use roll::{Frame, HIGHEST_PITCH, KEY_COUNT, LOWEST_PITCH, PianoRoll};
