//! The piano-roll type: one binary column of 88 keys per time step.
//!
//! A frame is a `u128` bit set (bit `k` = key `k` = MIDI pitch `LOWEST_PITCH + k`).
//! 88 keys fit in one machine word pair, so a whole Nottingham piece of 1,800 frames is
//! 29 KB and frame operations (union, count, compare) are single instructions.

/// MIDI pitch of the lowest piano key (A0).
pub const LOWEST_PITCH: u8 = 21;
/// Number of piano keys: MIDI pitches `LOWEST_PITCH ..= HIGHEST_PITCH`.
pub const KEY_COUNT: usize = 88;
/// MIDI pitch of the highest piano key (C8).
pub const HIGHEST_PITCH: u8 = LOWEST_PITCH + KEY_COUNT as u8 - 1;

/// The keys sounding in one time step, as a bit set over the 88 keys.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Frame(u128);

impl Frame {
    const MASK: u128 = (1u128 << KEY_COUNT) - 1;

    /// A frame with no key down.
    pub const SILENT: Frame = Frame(0);

    /// Build a frame from MIDI pitches; pitches outside the piano range are `None`.
    pub fn from_pitches(pitches: impl IntoIterator<Item = u8>) -> Option<Frame> {
        let mut frame = Frame::SILENT;
        for pitch in pitches {
            frame.insert(key_of_pitch(pitch)?);
        }
        Some(frame)
    }

    /// Key index `0..88` to bit; callers pass checked indices.
    pub fn insert(&mut self, key: usize) {
        debug_assert!(key < KEY_COUNT);
        self.0 |= (1u128 << key) & Self::MASK;
    }

    pub fn contains(self, key: usize) -> bool {
        key < KEY_COUNT && self.0 & (1u128 << key) != 0
    }

    /// How many keys are down (the frame's polyphony).
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Key indices `0..88` that are down, ascending.
    pub fn keys(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let key = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(key)
        })
    }

    /// MIDI pitches that are down, ascending.
    pub fn pitches(self) -> impl Iterator<Item = u8> {
        self.keys().map(|key| LOWEST_PITCH + key as u8)
    }

    /// The highest key down, if any.
    pub fn highest_key(self) -> Option<usize> {
        (self.0 != 0).then(|| 127 - self.0.leading_zeros() as usize)
    }

    /// Every key from `key` up (key `key` included); empty for `key >= 88`.
    pub fn keys_from(key: usize) -> Frame {
        if key >= KEY_COUNT {
            return Frame::SILENT;
        }
        Frame(Self::MASK & !((1u128 << key) - 1))
    }

    /// The raw bit set (bit k = key k); for dense tensors in the trainer.
    pub fn bits(self) -> u128 {
        self.0
    }

    /// Every key moved `semitones` up (down when negative); keys that would leave the piano
    /// are dropped.
    pub fn shifted(self, semitones: i32) -> Frame {
        let by = semitones.unsigned_abs();
        if by >= KEY_COUNT as u32 {
            return Frame::SILENT;
        }
        if semitones >= 0 {
            Frame((self.0 << by) & Self::MASK)
        } else {
            Frame(self.0 >> by)
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.pitches()).finish()
    }
}

/// Key index of a MIDI pitch, `None` outside the piano.
pub fn key_of_pitch(pitch: u8) -> Option<usize> {
    (LOWEST_PITCH..=HIGHEST_PITCH)
        .contains(&pitch)
        .then(|| usize::from(pitch - LOWEST_PITCH))
}

/// A binary piano roll: frame `t` holds the keys sounding during time step `t`.
///
/// What a time step means (an eighth note, 0.3 s, ...) is the [`crate::Grid`] the roll
/// was made on; the roll itself carries no timing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PianoRoll {
    frames: Vec<Frame>,
}

impl PianoRoll {
    /// An all-silent roll of `len` frames.
    pub fn silent(len: usize) -> PianoRoll {
        PianoRoll {
            frames: vec![Frame::SILENT; len],
        }
    }

    pub fn from_frames(frames: Vec<Frame>) -> PianoRoll {
        PianoRoll { frames }
    }

    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    pub fn frames_mut(&mut self) -> &mut [Frame] {
        &mut self.frames
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The roll transposed by `semitones` (see [`Frame::shifted`]): the trainer's
    /// transposition augmentation.
    pub fn shifted(&self, semitones: i32) -> PianoRoll {
        PianoRoll {
            frames: self.frames.iter().map(|f| f.shifted(semitones)).collect(),
        }
    }

    /// Total number of (frame, key) cells that are on.
    pub fn active_cells(&self) -> usize {
        self.frames.iter().map(|f| f.len()).sum()
    }

    /// Runs of consecutive active frames per key, as `(key, first_frame, frame_count)`,
    /// ordered by first frame then key: the notes a MIDI writer plays for this roll.
    pub fn note_runs(&self) -> Vec<(usize, usize, usize)> {
        let mut runs = Vec::new();
        let mut open: [Option<usize>; KEY_COUNT] = [None; KEY_COUNT];
        for (t, frame) in self.frames.iter().chain([&Frame::SILENT]).enumerate() {
            for (key, start) in open.iter_mut().enumerate() {
                match (frame.contains(key), *start) {
                    (true, None) => *start = Some(t),
                    (false, Some(s)) => {
                        runs.push((key, s, t - s));
                        *start = None;
                    }
                    _ => {}
                }
            }
        }
        runs.sort_by_key(|&(key, start, _)| (start, key));
        runs
    }
}

impl std::fmt::Debug for PianoRoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PianoRoll({} frames, {} active cells)",
            self.len(),
            self.active_cells()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_keeps_pitches_in_range_only() {
        let frame = Frame::from_pitches([21, 60, 108]).unwrap();
        assert_eq!(frame.pitches().collect::<Vec<_>>(), vec![21, 60, 108]);
        assert_eq!(frame.len(), 3);
        assert!(Frame::from_pitches([20]).is_none());
        assert!(Frame::from_pitches([109]).is_none());
    }

    #[test]
    fn shifting_moves_pitches_and_drops_keys_that_leave_the_piano() {
        let frame = Frame::from_pitches([21, 60, 64, 108]).unwrap();
        let up = |f: Frame, by| f.shifted(by).pitches().collect::<Vec<_>>();
        assert_eq!(up(frame, 2), vec![23, 62, 66]);
        assert_eq!(up(frame, -3), vec![57, 61, 105]);
        assert_eq!(up(frame, 0), vec![21, 60, 64, 108]);
        assert_eq!(up(frame, 87), vec![108]);
        assert!(frame.shifted(88).is_empty() && frame.shifted(-200).is_empty());
        let roll = PianoRoll::from_frames(vec![frame, Frame::SILENT]);
        let shifted = roll.shifted(5);
        assert_eq!(shifted.len(), 2);
        assert_eq!(shifted.frames()[0], frame.shifted(5));
        assert!(shifted.frames()[1].is_empty());
    }

    #[test]
    fn note_runs_split_at_gaps() {
        let c = Frame::from_pitches([60]).unwrap();
        let ce = Frame::from_pitches([60, 64]).unwrap();
        let roll = PianoRoll::from_frames(vec![c, ce, Frame::SILENT, c]);
        let key_c = key_of_pitch(60).unwrap();
        let key_e = key_of_pitch(64).unwrap();
        assert_eq!(
            roll.note_runs(),
            vec![(key_c, 0, 2), (key_e, 1, 1), (key_c, 3, 1)]
        );
    }
}
