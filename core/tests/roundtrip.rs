//! Properties: MIDI → roll → MIDI → roll is the identity on rolls, and no input panics.

use pianoroll::key::{Key, Mode};
use pianoroll::midi::MidiWriteOptions;
use pianoroll::{Frame, Grid, PianoRoll, RollSettings, Transpose, read_midi, write_midi};
use pianoroll_tests::smf::*;
use proptest::prelude::*;

fn grids() -> impl Strategy<Value = Grid> {
    prop_oneof![
        (1u32..=Grid::MAX_FRAMES_PER_BEAT).prop_map(|n| Grid::Beats { frames_per_beat: n }),
        (Grid::MIN_MICROS..=2_000_000u64).prop_map(|micros| Grid::Seconds { micros }),
    ]
}

/// Rolls whose last frame sounds (a roll ends with its last note, so trailing silence is not
/// something a MIDI file can carry).
fn rolls() -> impl Strategy<Value = PianoRoll> {
    prop::collection::vec(prop::collection::vec(21u8..=108, 0..6), 1..120).prop_map(|frames| {
        let mut frames: Vec<Frame> = frames
            .into_iter()
            .map(|pitches| Frame::from_pitches(pitches).unwrap())
            .collect();
        let last = frames.last_mut().unwrap();
        if last.is_empty() {
            *last = Frame::from_pitches([60]).unwrap();
        }
        PianoRoll::from_frames(frames)
    })
}

fn settings(grid: Grid, transpose: Transpose) -> RollSettings {
    RollSettings {
        grid,
        transpose,
        max_frames: RollSettings::DEFAULT_MAX_FRAMES,
    }
}

/// A format-0 file with random notes on a random ticks-per-quarter and tempo.
fn midi_files() -> impl Strategy<Value = Vec<u8>> {
    let note = (21u8..=108, 0u32..4_000, 1u32..2_000);
    (
        1u16..2_000,
        100_000u32..2_000_000,
        prop::collection::vec(note, 1..40),
    )
        .prop_map(|(tpq, tempo, notes)| {
            let mut timed: Vec<(u32, Vec<u8>)> = vec![(
                0,
                vec![
                    0xff,
                    0x51,
                    3,
                    (tempo >> 16) as u8,
                    (tempo >> 8) as u8,
                    tempo as u8,
                ],
            )];
            for (pitch, start, length) in notes {
                timed.push((start, note_on(pitch).to_vec()));
                timed.push((start + length, note_off(pitch).to_vec()));
            }
            timed.sort_by_key(|(tick, event)| (*tick, event[0] == 0x90));
            let mut list = Vec::new();
            let mut last = 0;
            for (tick, event) in &timed {
                list.push((tick - last, event.as_slice()));
                last = *tick;
            }
            let mut bytes = header(0, 1, tpq.to_be_bytes());
            bytes.extend(track(&events(&list)));
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None, // a failure prints its minimal case; nothing to keep in tests/
        ..ProptestConfig::default()
    })]

    #[test]
    fn roll_to_midi_to_roll_is_the_identity(roll in rolls(), grid in grids(), minor in any::<bool>()) {
        // The writer records the key (C, as after transposition), so a reader that transposes
        // to C leaves the roll as it is.
        let key = Key { tonic: 0, mode: if minor { Mode::Minor } else { Mode::Major } };
        let options = MidiWriteOptions { key: Some(key), ..Default::default() };
        let bytes = write_midi(&roll, grid, &options);
        for transpose in [Transpose::None, Transpose::ToC] {
            let back = read_midi(&bytes, &settings(grid, transpose)).unwrap();
            prop_assert_eq!(&back.roll, &roll);
        }
    }

    #[test]
    fn midi_to_roll_to_midi_to_roll_gives_the_same_roll(bytes in midi_files(), grid in grids()) {
        let settings = settings(grid, Transpose::None);
        let first = match read_midi(&bytes, &settings) {
            Ok(piece) => piece,
            // Every note may vanish on a coarse grid, or a fine grid over a slow file may pass
            // the frame limit: both are answers, not failures.
            Err(pianoroll::MidiError::NoNotes { .. } | pianoroll::MidiError::TooLong { .. }) => {
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let written = write_midi(&first.roll, grid, &MidiWriteOptions::default());
        let second = read_midi(&written, &settings).unwrap();
        prop_assert_eq!(second.roll, first.roll);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for settings in [RollSettings::benchmark(), RollSettings::seed()] {
            let _ = read_midi(&bytes, &settings);
        }
    }

    #[test]
    fn corrupted_midi_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = scale();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len()) + 1);
        for settings in [RollSettings::benchmark(), RollSettings::seed()] {
            let _ = read_midi(&bytes, &settings);
        }
    }
}
