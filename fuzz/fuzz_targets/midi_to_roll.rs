//! Bytes → roll must never panic, on either preset, and a roll that comes out must survive the
//! MIDI writer and read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pianoroll::midi::MidiWriteOptions;
use pianoroll::{RollSettings, Transpose, read_midi, write_midi};

fuzz_target!(|bytes: &[u8]| {
    for settings in [RollSettings::benchmark(), RollSettings::seed()] {
        let settings = RollSettings {
            max_frames: 20_000, // keep each input fast; the cap itself is what is under test
            ..settings
        };
        if let Ok(piece) = read_midi(bytes, &settings) {
            let written = write_midi(&piece.roll, settings.grid, &MidiWriteOptions::default());
            let reread = RollSettings {
                transpose: Transpose::None,
                ..settings
            };
            let back = read_midi(&written, &reread).expect("written MIDI reads back");
            assert_eq!(back.roll, piece.roll);
        }
    }
});
