//! Meters (time signatures): as people write them ("6/8"), as MIDI carries them, and the bar
//! length they give on a grid, where a roll's pictures draw their bar lines.

use crate::grid::Grid;

/// A time signature: `numerator` beats of a `1/denominator` note a bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Meter {
    numerator: u8,
    denominator: u8,
}

/// Why a text or a MIDI event is not a meter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    #[error("{0:?} is not a meter: write beats/note value, as 6/8 or 4/4")]
    NotAMeter(String),
    #[error("{0} beats a bar: the numerator must be 1 to 255")]
    Numerator(u64),
    #[error("a 1/{0} note: the denominator must be a power of two from 1 to 64")]
    Denominator(u64),
}

impl Meter {
    /// 4/4, what a piece without a time signature is taken to be (as the MIDI standard has it).
    pub const COMMON: Meter = Meter {
        numerator: 4,
        denominator: 4,
    };

    /// Largest denominator: a bar counted in 1/64 notes is already finer than any grid here.
    pub const MAX_DENOMINATOR: u8 = 64;

    pub fn new(numerator: u64, denominator: u64) -> Result<Meter, MeterError> {
        let numerator = u8::try_from(numerator)
            .ok()
            .filter(|&n| n > 0)
            .ok_or(MeterError::Numerator(numerator))?;
        let denominator = u8::try_from(denominator)
            .ok()
            .filter(|&d| d.is_power_of_two() && d <= Self::MAX_DENOMINATOR)
            .ok_or(MeterError::Denominator(denominator))?;
        Ok(Meter {
            numerator,
            denominator,
        })
    }

    pub fn numerator(self) -> u8 {
        self.numerator
    }

    pub fn denominator(self) -> u8 {
        self.denominator
    }

    /// The meter of a MIDI time-signature event (its denominator as a power of two); `None`
    /// for values no meter has (0 beats, a 1/128 note or finer).
    pub fn from_midi(numerator: u8, denominator_power: u8) -> Option<Meter> {
        let denominator = 1u64.checked_shl(u32::from(denominator_power))?;
        Meter::new(u64::from(numerator), denominator).ok()
    }

    /// The MIDI time-signature event's four bytes: numerator, the denominator's power of two,
    /// MIDI clocks per metronome click and 32nd notes per quarter. The click is the beat, or in
    /// a compound meter (6/8, 9/8, 12/8, 6/4) the dotted beat of three, as notation programs
    /// write it.
    pub fn midi(self) -> (u8, u8, u8, u8) {
        let compound = self.numerator >= 6 && self.numerator.is_multiple_of(3);
        let beats_per_click = if compound { 3 } else { 1 };
        // 24 MIDI clocks a quarter note, so 96 a whole note.
        let clocks = (96 * beats_per_click / u32::from(self.denominator)).clamp(1, 255);
        (
            self.numerator,
            self.denominator.trailing_zeros() as u8,
            clocks as u8,
            8,
        )
    }

    /// Where bars start on `grid`. A beat grid counts the file's quarter notes; a seconds grid
    /// is written one eighth note a frame ([`crate::midi::write_midi`]), so its bars are counted
    /// in those eighths.
    pub fn bars(self, grid: Grid) -> Bars {
        let frames_per_quarter = match grid {
            Grid::Beats { frames_per_beat } => u64::from(frames_per_beat.max(1)),
            Grid::Seconds { .. } => 2,
        };
        Bars::new(
            u64::from(self.numerator) * 4 * frames_per_quarter,
            u64::from(self.denominator),
        )
    }
}

impl std::fmt::Display for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

impl std::str::FromStr for Meter {
    type Err = MeterError;

    /// "6/8", "4/4", " 3 / 4 ".
    fn from_str(text: &str) -> Result<Meter, MeterError> {
        let not_a_meter = || MeterError::NotAMeter(text.to_owned());
        let (numerator, denominator) = text.split_once('/').ok_or_else(not_a_meter)?;
        let number = |part: &str| part.trim().parse::<u64>().map_err(|_| not_a_meter());
        Meter::new(number(numerator)?, number(denominator)?)
    }
}

/// Bar length in frames, a fraction (`frames / per` frames a bar), since a bar need not be a
/// whole number of frames (7/16 on an eighth-note grid is 3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bars {
    frames: u64,
    per: u64,
}

impl Bars {
    /// A bar every `frames / per` frames (reduced; both at least 1).
    pub fn new(frames: u64, per: u64) -> Bars {
        let (frames, per) = (frames.max(1), per.max(1));
        let divisor = gcd(frames, per);
        Bars {
            frames: frames / divisor,
            per: per / divisor,
        }
    }

    /// Frames a bar (3.5 for 7/16 on eighths).
    pub fn length(self) -> f64 {
        self.frames as f64 / self.per as f64
    }

    /// Frames a bar, when that is a whole number.
    pub fn whole_frames(self) -> Option<u64> {
        (self.per == 1).then_some(self.frames)
    }

    /// Whether a bar line belongs at the start of frame `t`: the first frame boundary at or
    /// after a bar's start. Bar `k` starts at `k·frames/per`, and frame `t` is its line when
    /// `(t − 1)·per < k·frames ≤ t·per`.
    pub fn starts_at(self, t: u64) -> bool {
        t == 0
            || (u128::from(t) * u128::from(self.per)) / u128::from(self.frames)
                != (u128::from(t - 1) * u128::from(self.per)) / u128::from(self.frames)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_parse_and_refuse_by_part() {
        let six_eight: Meter = "6/8".parse().unwrap();
        assert_eq!((six_eight.numerator(), six_eight.denominator()), (6, 8));
        assert_eq!(six_eight.to_string(), "6/8");
        assert_eq!(" 3 / 4 ".parse::<Meter>().unwrap().to_string(), "3/4");
        assert_eq!("7/0".parse::<Meter>(), Err(MeterError::Denominator(0)));
        assert_eq!("7/6".parse::<Meter>(), Err(MeterError::Denominator(6)));
        assert_eq!("0/4".parse::<Meter>(), Err(MeterError::Numerator(0)));
        assert_eq!("256/4".parse::<Meter>(), Err(MeterError::Numerator(256)));
        assert!(matches!(
            "six eight".parse::<Meter>(),
            Err(MeterError::NotAMeter(_))
        ));
        assert!(
            MeterError::Denominator(0)
                .to_string()
                .contains("power of two")
        );
    }

    #[test]
    fn midi_events_round_trip() {
        for text in ["4/4", "6/8", "3/4", "2/2", "9/8", "7/16", "12/8", "5/64"] {
            let meter: Meter = text.parse().unwrap();
            let (numerator, power, clocks, _) = meter.midi();
            assert_eq!(Meter::from_midi(numerator, power), Some(meter), "{text}");
            assert!(clocks >= 1);
        }
        // 6/8 clicks on the dotted quarter (36 clocks), 4/4 on the quarter (24).
        assert_eq!(Meter::new(6, 8).unwrap().midi(), (6, 3, 36, 8));
        assert_eq!(Meter::COMMON.midi(), (4, 2, 24, 8));
        assert_eq!(Meter::from_midi(0, 2), None);
        assert_eq!(Meter::from_midi(4, 7), None);
        assert_eq!(Meter::from_midi(4, 255), None);
    }

    #[test]
    fn bars_on_grids() {
        let eighths = Grid::Beats { frames_per_beat: 2 };
        let six_eight = Meter::new(6, 8).unwrap().bars(eighths);
        assert_eq!(six_eight.whole_frames(), Some(6));
        let lines: Vec<u64> = (0..20).filter(|&t| six_eight.starts_at(t)).collect();
        assert_eq!(lines, [0, 6, 12, 18]);
        assert_eq!(Meter::COMMON.bars(eighths).whole_frames(), Some(8));
        assert_eq!(
            Meter::COMMON
                .bars(Grid::Beats { frames_per_beat: 4 })
                .whole_frames(),
            Some(16)
        );
        // 0.3 s frames are written as eighths: 3/4 is six of them.
        let seconds = Grid::Seconds { micros: 300_000 };
        assert_eq!(
            Meter::new(3, 4).unwrap().bars(seconds).whole_frames(),
            Some(6)
        );
        // 7/16 on eighths: bars of 3.5 frames start at 0, 3.5, 7, 10.5: lines at 0, 4, 7, 11.
        let seven = Meter::new(7, 16).unwrap().bars(eighths);
        assert_eq!(seven.whole_frames(), None);
        let lines: Vec<u64> = (0..12).filter(|&t| seven.starts_at(t)).collect();
        assert_eq!(lines, [0, 4, 7, 11]);
    }
}
