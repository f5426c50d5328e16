//! A melody on top: the highest line of a piece, and which keys a model must and must not play
//! to keep that line on top while it writes the rest (harmonising).
//!
//! A model samples a frame key by key from one uniform number per key (a key sounds when its
//! uniform is below the model's probability), so a uniform of 0 forces a key on and 1 forces
//! it off without changing the model ([`Constraint`]; applied in `proto::sampling`). Frame by
//! frame the melody gives:
//!
//! - where it sounds key `m`: `m` on, every key above `m` off, the keys below the model's;
//! - where it rests: every key at or above its last note off (before its first note: its first
//!   note), so the accompaniment does not rise into the tune's register while it rests;
//! - a melody with no note constrains nothing.
//!
//! The melody of a MIDI file is its highest line ([`top_line`]): a file holding only the tune
//! gives the tune itself, and a file with chords under the tune gives the tune.

use crate::roll::Frame;

/// The keys a frame must have down (`on`) and must not (`off`); the others are free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Constraint {
    pub on: Frame,
    pub off: Frame,
}

impl Constraint {
    /// Nothing forced.
    pub const FREE: Constraint = Constraint {
        on: Frame::SILENT,
        off: Frame::SILENT,
    };

    /// Whether `frame` keeps this constraint.
    pub fn allows(self, frame: Frame) -> bool {
        frame.bits() & self.on.bits() == self.on.bits() && frame.bits() & self.off.bits() == 0
    }
}

/// The highest key down in each frame (`None` for a silent frame).
pub fn top_line(frames: &[Frame]) -> Vec<Option<usize>> {
    frames.iter().map(|frame| frame.highest_key()).collect()
}

/// The constraint of each frame that keeps `line` (a key per frame, or a rest) on top, by the
/// rules in the module documentation.
pub fn melody_constraints(line: &[Option<usize>]) -> Vec<Constraint> {
    let first = line.iter().flatten().next().copied();
    let mut last = first;
    line.iter()
        .map(|note| match note {
            Some(key) => {
                last = Some(*key);
                let mut on = Frame::SILENT;
                on.insert(*key);
                Constraint {
                    on,
                    off: Frame::keys_from(key + 1),
                }
            }
            None => Constraint {
                on: Frame::SILENT,
                off: last.map_or(Frame::SILENT, Frame::keys_from),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roll::key_of_pitch;

    fn frame(pitches: &[u8]) -> Frame {
        Frame::from_pitches(pitches.iter().copied()).unwrap()
    }

    #[test]
    fn the_top_line_is_the_highest_key_of_each_frame() {
        let frames = [
            frame(&[48, 60, 64, 72]),
            frame(&[]),
            frame(&[21]),
            frame(&[108]),
        ];
        let keys = |p: u8| key_of_pitch(p);
        assert_eq!(top_line(&frames), vec![keys(72), None, keys(21), keys(108)]);
    }

    #[test]
    fn a_note_is_forced_on_with_nothing_above_it_and_a_rest_keeps_below_the_last_note() {
        let (e5, g5) = (key_of_pitch(76).unwrap(), key_of_pitch(79).unwrap());
        let constraints = melody_constraints(&[None, Some(g5), None, Some(e5)]);
        // Before the first note: under the first note.
        assert_eq!(constraints[0].on, Frame::SILENT);
        assert_eq!(constraints[0].off, Frame::keys_from(g5));
        // The note: on, and nothing above.
        assert_eq!(constraints[1].on, frame(&[79]));
        assert_eq!(constraints[1].off, Frame::keys_from(g5 + 1));
        assert!(constraints[1].allows(frame(&[48, 64, 79])));
        assert!(
            !constraints[1].allows(frame(&[48, 64])),
            "the melody note is missing"
        );
        assert!(
            !constraints[1].allows(frame(&[79, 81])),
            "a key above the melody"
        );
        // The rest after it: nothing at or above G5.
        assert!(constraints[2].allows(frame(&[48, 78])));
        assert!(!constraints[2].allows(frame(&[79])));
        assert_eq!(constraints[3].off.len(), 88 - e5 - 1);
        // No melody at all: nothing forced.
        assert_eq!(melody_constraints(&[None, None]), vec![Constraint::FREE; 2]);
        // The highest key has nothing above it.
        assert_eq!(melody_constraints(&[Some(87)])[0].off, Frame::SILENT);
    }
}
