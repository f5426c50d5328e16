//! pianoroll's data layer: MIDI collections → binary piano rolls → Arrow datasets, and back.
//!
//! This crate is the one home of
//! - the piano-roll type ([`PianoRoll`], [`Frame`]: 88 keys, MIDI 21..=108),
//! - the MIDI ↔ roll mapping ([`midi`]: the exact note → frame rule is documented there),
//! - the grids and transpositions ([`grid`], [`key`]),
//! - the Arrow schema of a dataset ([`schema`]) and the dataset builder ([`dataset`]), and the
//!   import of the published benchmark rolls ([`published`], read by [`matfile`]),
//! - the roll → MIDI, roll → PNG and roll → WAV writers ([`midi::write_midi`], [`render`],
//!   [`audio`]),
//! - atomic file and folder publishing for every output of the workspace ([`atomic`]),
//! - dataset statistics with polars ([`stats`], feature `stats`),
//! - the start and end of every binary of the workspace ([`binary`], feature `binary`): logging
//!   and the error → exit code convention, so the three command-line tools behave alike.
//!
//! The trainer and the server depend on it with default features off (no polars, no CLI).

pub mod atomic;
pub mod audio;
pub mod baseline;
#[cfg(feature = "binary")]
pub mod binary;
pub mod dataset;
pub mod grid;
pub mod key;
pub mod matfile;
pub mod midi;
pub mod published;
pub mod render;
pub mod roll;
pub mod schema;
#[cfg(feature = "stats")]
pub mod stats;

pub use grid::{Grid, RollSettings, Transpose};
pub use midi::{MidiError, Piece, read_midi, write_midi};
pub use roll::{Frame, HIGHEST_PITCH, KEY_COUNT, LOWEST_PITCH, PianoRoll};
