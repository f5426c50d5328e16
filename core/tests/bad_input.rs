//! Every kind of bad input the issue lists, as crafted bytes: each one either fails with a clear
//! one-line error or is handled by a documented rule and counted.

use pianoroll::midi::MidiError;
use pianoroll::{Grid, RollSettings, Transpose, read_midi};
use pianoroll_tests::smf::*;

fn benchmark(bytes: &[u8]) -> Result<pianoroll::Piece, MidiError> {
    read_midi(bytes, &RollSettings::benchmark())
}

#[test]
fn the_crafted_scale_is_valid() {
    let piece = benchmark(&scale()).unwrap();
    assert_eq!(piece.roll.len(), 8);
    assert_eq!(piece.counts.kept, 8);
    assert_eq!(piece.transpose, 0, "C major needs no transposition");
}

#[test]
fn not_midi_at_all() {
    assert_eq!(
        benchmark(b"RIFX this is a text file, not MIDI"),
        Err(MidiError::NotMidi)
    );
    assert_eq!(benchmark(b"\x89PNG\r\n\x1a\n"), Err(MidiError::NotMidi));
}

#[test]
fn empty_file() {
    assert_eq!(benchmark(b""), Err(MidiError::Empty));
}

#[test]
fn truncated_file() {
    let bytes = scale();
    for cut in [3, 10, 14, 20, bytes.len() / 2, bytes.len() - 1] {
        let error = benchmark(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(error, MidiError::Malformed(_) | MidiError::NotMidi),
            "cut at {cut}: {error}"
        );
    }
}

#[test]
fn chunk_length_past_the_end() {
    let mut bytes = header(0, 1, 480u16.to_be_bytes());
    bytes.extend(b"MTrk");
    bytes.extend(1_000u32.to_be_bytes()); // claims 1000 bytes, has 7
    bytes.extend([0x00, 0x90, 60, 100]);
    bytes.extend(END_OF_TRACK[..3].iter());
    let error = benchmark(&bytes).unwrap_err();
    assert!(matches!(error, MidiError::Malformed(_)), "{error}");

    // A header chunk claiming more than the file holds.
    let mut bytes = b"MThd".to_vec();
    bytes.extend(0xffff_fff0u32.to_be_bytes());
    bytes.extend([0, 0, 0, 1, 1, 0xe0]);
    let error = benchmark(&bytes).unwrap_err();
    assert!(matches!(error, MidiError::Malformed(_)), "{error}");
}

#[test]
fn smpte_time_division() {
    // -25 fps (0xE7), 40 ticks per frame = 1000 ticks per second.
    let mut bytes = header(0, 1, [0xe7, 40]);
    bytes.extend(track(&events(&[
        (0, &note_on(60)),
        (1000, &note_off(60)), // one second
    ])));
    assert_eq!(
        benchmark(&bytes),
        Err(MidiError::SmpteWithBeatGrid { fps: 25 })
    );
    // On a seconds grid SMPTE time is exact: 1 s = 4 frames of 0.25 s.
    let settings = RollSettings {
        grid: Grid::Seconds { micros: 250_000 },
        transpose: Transpose::None,
        max_frames: 1000,
    };
    let piece = read_midi(&bytes, &settings).unwrap();
    assert_eq!(piece.roll.len(), 4);
    assert!(piece.roll.frames().iter().all(|f| f.pitches().eq([60])));
}

#[test]
fn smpte_rate_minus_128_is_refused() {
    // Found by the fuzzer: midly negates this byte as an i8.
    let mut bytes = header(1, 1, [0x80, 0x3e]);
    bytes.extend(track(&events(&[(0, &note_on(60)), (10, &note_off(60))])));
    let error = benchmark(&bytes).unwrap_err();
    assert!(error.to_string().contains("SMPTE"), "{error}");
    // The same in a second header chunk where a track should be.
    let mut bytes = header(1, 1, 480u16.to_be_bytes());
    bytes.extend(header(1, 1, [0x80, 0x00]));
    let error = benchmark(&bytes).unwrap_err();
    assert!(error.to_string().contains("SMPTE"), "{error}");
}

#[test]
fn zero_ticks_per_quarter() {
    let mut bytes = header(0, 1, [0, 0]);
    bytes.extend(track(&events(&[(0, &note_on(60)), (10, &note_off(60))])));
    assert_eq!(benchmark(&bytes), Err(MidiError::ZeroTicksPerQuarter));
}

#[test]
fn format_2() {
    let mut bytes = header(2, 1, 480u16.to_be_bytes());
    bytes.extend(track(&events(&[(0, &note_on(60)), (240, &note_off(60))])));
    assert_eq!(benchmark(&bytes), Err(MidiError::Format2));
}

#[test]
fn note_on_without_note_off_ends_at_the_end_of_its_track() {
    let bytes = single_track(&[
        (0, &note_on(60)),
        (0, &note_on(64)),
        (480, &note_off(64)),
        (480, &[0xff, 0x01, 0x00]), // an empty text event, so the track lasts 960 ticks
    ]);
    let piece = benchmark(&bytes).unwrap();
    assert_eq!(piece.counts.unterminated, 1);
    assert_eq!(piece.roll.len(), 4, "C sounds until tick 960 = 4 eighths");
    assert!(piece.roll.frames()[3].pitches().eq([60]));
}

#[test]
fn overlapping_same_pitch_notes_are_retriggered() {
    // A second note-on for a sounding key, then two note-offs: the first ends at the second
    // note-on; the extra note-off is an orphan.
    let bytes = single_track(&[
        (0, &note_on(60)),
        (240, &note_on(60)),
        (480, &note_off(60)),
        (0, &note_off(60)),
    ]);
    let piece = benchmark(&bytes).unwrap();
    assert_eq!(piece.counts.retriggered, 1);
    assert_eq!(piece.counts.orphan_note_offs, 1);
    assert_eq!(piece.counts.kept, 2);
    assert_eq!(piece.roll.len(), 3);
    assert!(piece.roll.frames().iter().all(|f| f.pitches().eq([60])));
}

#[test]
fn a_delta_time_of_hours_is_refused_before_allocation() {
    // 0x0FFFFFFF ticks (the largest delta) at 480 per quarter = 1.1 million eighth notes.
    let bytes = single_track(&[(0, &note_on(60)), (0x0fff_ffff, &note_off(60))]);
    let error = benchmark(&bytes).unwrap_err();
    assert!(
        matches!(
            error,
            MidiError::TooLong {
                frames: 1_118_481,
                max_frames: 100_000
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("--max-frames"));
}

#[test]
fn drums_and_notes_off_the_keyboard_are_counted_and_dropped() {
    let bytes = single_track(&[
        (0, &[0x99, 36, 100]), // channel 10: kick drum
        (0, &note_on(10)),     // below A0
        (0, &note_on(60)),
        (240, &[0x89, 36, 0]),
        (0, &note_off(10)),
        (0, &note_off(60)),
    ]);
    let piece = read_midi(
        &bytes,
        &RollSettings {
            transpose: Transpose::None,
            ..RollSettings::benchmark()
        },
    )
    .unwrap();
    assert_eq!(piece.counts.drums, 1);
    assert_eq!(piece.counts.out_of_range, 1);
    assert!(piece.roll.frames()[0].pitches().eq([60]));
}

#[test]
fn a_file_with_only_drums_has_no_notes() {
    let bytes = single_track(&[(0, &[0x99, 36, 100]), (240, &[0x89, 36, 0])]);
    assert_eq!(benchmark(&bytes), Err(MidiError::NoNotes { notes: 0 }));
}

#[test]
fn a_zero_tempo_is_refused_on_a_seconds_grid() {
    let bytes = single_track(&[
        (0, &[0xff, 0x51, 0x03, 0, 0, 0]),
        (0, &note_on(60)),
        (240, &note_off(60)),
    ]);
    assert_eq!(
        read_midi(&bytes, &RollSettings::seed()),
        Err(MidiError::ZeroTempo { tick: 0 })
    );
}

#[test]
fn non_utf8_track_names_are_read_as_latin1() {
    // "Café" in Latin-1.
    let bytes = single_track(&[
        (0, &[0xff, 0x03, 0x04, b'C', b'a', b'f', 0xe9]),
        (0, &note_on(60)),
        (240, &note_off(60)),
    ]);
    assert_eq!(benchmark(&bytes).unwrap().title.as_deref(), Some("Café"));
}
