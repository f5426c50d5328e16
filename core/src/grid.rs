//! How MIDI time becomes frames: the grid, the transposition and their presets.

use serde::{Deserialize, Serialize};

/// The time step of a roll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Grid {
    /// `frames_per_beat` frames per quarter note, following the file's own beat (its ticks per
    /// quarter), whatever the tempo. 2 = eighth notes, the Nottingham benchmark grid.
    Beats { frames_per_beat: u32 },
    /// Fixed wall-clock frames of `micros` microseconds, following the file's tempo map.
    Seconds { micros: u64 },
}

impl Grid {
    /// Largest accepted `frames_per_beat`: finer grids than 1/64 of a beat make no musical sense
    /// and would let a hostile file blow up the frame count.
    pub const MAX_FRAMES_PER_BEAT: u32 = 64;
    /// Shortest accepted frame: 1 ms.
    pub const MIN_MICROS: u64 = 1_000;
    /// Longest accepted frame: 60 s.
    pub const MAX_MICROS: u64 = 60_000_000;

    /// A grid of `seconds`-long frames; `None` outside 1 ms ..= 60 s.
    pub fn seconds(seconds: f64) -> Option<Grid> {
        let micros = (seconds * 1e6).round();
        (seconds.is_finite()
            && (Self::MIN_MICROS as f64..=Self::MAX_MICROS as f64).contains(&micros))
        .then_some(Grid::Seconds {
            micros: micros as u64,
        })
    }

    /// A grid of `frames_per_beat` frames per quarter note; `None` outside 1 ..= 64.
    pub fn beats(frames_per_beat: u32) -> Option<Grid> {
        (1..=Self::MAX_FRAMES_PER_BEAT)
            .contains(&frames_per_beat)
            .then_some(Grid::Beats { frames_per_beat })
    }

    /// Human form for logs and tables: "1/2 beat", "0.3 s".
    pub fn describe(&self) -> String {
        match *self {
            Grid::Beats { frames_per_beat } => format!("1/{frames_per_beat} beat"),
            Grid::Seconds { micros } => format!("{} s", micros as f64 / 1e6),
        }
    }
}

/// What to do with the key of each piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transpose {
    /// Shift every piece by the smallest interval (-5..=+6 semitones) that puts its tonic on C,
    /// so major pieces land in C major and minor ones in C minor.
    ToC,
    /// Keep pieces as written.
    None,
}

/// Everything that decides which roll a MIDI file becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollSettings {
    pub grid: Grid,
    pub transpose: Transpose,
    /// A piece longer than this is refused instead of allocated (a corrupt delta time can put a
    /// note hours after the start).
    pub max_frames: usize,
}

impl RollSettings {
    /// Default `max_frames`: 100,000 frames is about 7 hours of eighth notes at 120 bpm.
    pub const DEFAULT_MAX_FRAMES: usize = 100_000;

    /// The Nottingham benchmark setting (Boulanger-Lewandowski et al. 2012): one frame per
    /// eighth note following the beat, every piece transposed to C major / C minor.
    pub fn benchmark() -> RollSettings {
        RollSettings {
            grid: Grid::Beats { frames_per_beat: 2 },
            transpose: Transpose::ToC,
            max_frames: Self::DEFAULT_MAX_FRAMES,
        }
    }

    /// The original student project's setting: fixed 0.3 s frames, no transposition.
    pub fn seed() -> RollSettings {
        RollSettings {
            grid: Grid::Seconds { micros: 300_000 },
            transpose: Transpose::None,
            max_frames: Self::DEFAULT_MAX_FRAMES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_constructors_reject_out_of_range() {
        assert_eq!(Grid::seconds(0.3), Some(Grid::Seconds { micros: 300_000 }));
        assert_eq!(Grid::seconds(0.0), None);
        assert_eq!(Grid::seconds(f64::NAN), None);
        assert_eq!(Grid::seconds(1e9), None);
        assert_eq!(Grid::beats(0), None);
        assert_eq!(Grid::beats(65), None);
        assert_eq!(Grid::beats(2), Some(Grid::Beats { frames_per_beat: 2 }));
    }
}
