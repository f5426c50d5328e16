//! pianoroll's data layer: MIDI collections → piano-roll datasets (Arrow IPC files), and the
//! statistics of a dataset.
//!
//! This crate is the one home of
//! - the Arrow schema of a dataset ([`schema`]) and the dataset builder ([`dataset`]), and the
//!   import of the published benchmark rolls ([`published`], read by [`matfile`]),
//! - constant-rate baselines ([`baseline`]),
//! - dataset statistics with polars ([`stats`], feature `stats`).
//!
//! The roll type, the grids, the MIDI mapping and the writers it builds on live in the core
//! crate, `pianoroll`. The trainer depends on this crate with default features off (no polars,
//! no CLI); the server does not depend on it at all.

pub mod baseline;
pub mod dataset;
pub mod matfile;
pub mod published;
pub mod schema;
#[cfg(feature = "stats")]
pub mod stats;
