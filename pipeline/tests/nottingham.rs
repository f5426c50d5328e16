//! The bundled Nottingham set (Boulanger-Lewandowski 2012 split) through the library.

use std::collections::BTreeMap;

use pianoroll::midi::MidiWriteOptions;
use pianoroll::{RollSettings, Transpose, read_midi, write_midi};
use pianoroll_tests::nottingham;
use pipeline::dataset::{BuildOptions, Split, build};
use pipeline::schema::read_split;

#[test]
fn benchmark_dataset_matches_the_published_split() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("nottingham");
    let summary = build(&nottingham(), &output, &BuildOptions::default()).unwrap();
    let manifest = &summary.manifest;
    assert_eq!(
        manifest.errors,
        0,
        "{:?}",
        manifest.failures().collect::<Vec<_>>()
    );
    let pieces: BTreeMap<Split, u64> = manifest
        .splits
        .iter()
        .map(|(s, x)| (*s, x.pieces))
        .collect();
    assert_eq!(
        pieces,
        BTreeMap::from([(Split::Train, 694), (Split::Valid, 173), (Split::Test, 170)])
    );
    // The frame counts the literature reports for the benchmark (valid 45,686, test 44,633);
    // the published MAT-file's rolls hold one frame less per piece (see the import test).
    let frames: BTreeMap<Split, u64> = manifest
        .splits
        .iter()
        .map(|(s, x)| (*s, x.frames))
        .collect();
    assert_eq!(frames[&Split::Valid], 45_686);
    assert_eq!(frames[&Split::Test], 44_633);
    // No published figure for train; other note-to-frame rules give about 177,100.
    assert!(
        (176_000..178_500).contains(&frames[&Split::Train]),
        "{frames:?}"
    );
    assert_eq!(manifest.inputs.len(), 1037);
    assert!(
        manifest
            .inputs
            .iter()
            .all(|i| i.sha256.as_ref().is_some_and(|h| h.len() == 64) && i.bytes > 0)
    );

    // Every piece has a key signature, is moved by -5..=+6 and lands in C.
    for split in Split::ALL {
        let (settings, rows) = read_split(&output.join(split.file_name())).unwrap();
        assert_eq!(settings, RollSettings::benchmark());
        for row in &rows {
            assert_eq!(row.key_source, "signature", "{}", row.id);
            assert!((-5..=6).contains(&row.transpose), "{}", row.id);
            assert!(row.id.starts_with(split.as_str()), "{}", row.id);
        }
        // The stored rolls are exactly what the mapping gives for the files.
        for row in rows.iter().step_by(17) {
            let bytes = std::fs::read(nottingham().join(&row.source)).unwrap();
            let piece = read_midi(&bytes, &settings).unwrap();
            assert_eq!(piece.roll, row.roll, "{}", row.id);
            assert_eq!(piece.title, row.title);
        }
    }
    // Sparse nested lists keep the whole set small.
    let bytes: u64 = Split::ALL
        .iter()
        .map(|s| std::fs::metadata(output.join(s.file_name())).unwrap().len())
        .sum();
    assert!(bytes < 6_000_000, "{bytes} bytes");
}

#[test]
fn every_file_round_trips_through_midi_on_both_presets() {
    for settings in [RollSettings::benchmark(), RollSettings::seed()] {
        let reread = RollSettings {
            transpose: Transpose::None,
            ..settings
        };
        let mut files = 0;
        for split in Split::ALL {
            for entry in std::fs::read_dir(nottingham().join(split.as_str())).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                let piece = read_midi(&bytes, &settings).unwrap();
                let written = write_midi(&piece.roll, settings.grid, &MidiWriteOptions::default());
                assert_eq!(read_midi(&written, &reread).unwrap().roll, piece.roll);
                files += 1;
            }
        }
        assert_eq!(files, 1037);
    }
}

#[test]
fn the_seed_grid_loses_short_notes_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let options = BuildOptions {
        settings: RollSettings::seed(),
        ..Default::default()
    };
    let summary = build(&nottingham(), &dir.path().join("seed"), &options).unwrap();
    let notes = summary.manifest.total_notes();
    let share = notes.vanished as f64 / notes.notes as f64;
    // Nottingham has many sixteenth and eighth notes; 0.3 s frames (longer than an eighth at
    // 120 bpm) must lose a visible share of them, but far from all.
    assert!((0.01..0.3).contains(&share), "vanished {share}");
    assert_eq!(
        notes.kept + notes.vanished + notes.out_of_range,
        notes.notes
    );
    assert!(
        summary
            .manifest
            .splits
            .values()
            .all(|s| s.transpositions.keys().eq([&0]))
    );
}

/// The published rolls import as a dataset with the benchmark's piece and frame counts; an
/// import that fails (a cut file) leaves the dataset that was there as it was.
#[test]
fn published_rolls_import_as_a_dataset() {
    let mat = nottingham().join("../nottingham-bl2012/Nottingham.mat");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("published");
    let manifest = pipeline::published::import(
        &mat,
        &output,
        false,
        pipeline::matfile::DEFAULT_MAX_ELEMENT_BYTES,
    )
    .unwrap();
    let counts: Vec<(u64, u64)> = Split::ALL
        .iter()
        .map(|s| (manifest.splits[s].pieces, manifest.splits[s].frames))
        .collect();
    assert_eq!(counts, [(694, 176_561), (173, 45_513), (170, 44_463)]);
    assert_eq!(manifest.settings, RollSettings::benchmark());
    let (settings, test) = read_split(&output.join(Split::Test.file_name())).unwrap();
    assert_eq!(settings, RollSettings::benchmark());
    assert_eq!(test[0].id, "test/000");
    assert_eq!(test[0].source, "testdata{1}");
    // About four keys sound per frame, as in the project's own rolls.
    let cells: usize = test.iter().map(|p| p.roll.active_cells()).sum();
    let per_frame = cells as f64 / 44_463.0;
    assert!((3.5..4.5).contains(&per_frame), "{per_frame}");

    let before = std::fs::read(output.join("manifest.json")).unwrap();
    let bytes = std::fs::read(&mat).unwrap();
    let cut = dir.path().join("cut.mat");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let error = pipeline::published::import(
        &cut,
        &output,
        true,
        pipeline::matfile::DEFAULT_MAX_ELEMENT_BYTES,
    )
    .unwrap_err();
    assert!(error.to_string().contains("cut.mat"), "{error}");
    assert_eq!(std::fs::read(output.join("manifest.json")).unwrap(), before);
    let error = pipeline::published::import(
        &mat,
        &output,
        false,
        pipeline::matfile::DEFAULT_MAX_ELEMENT_BYTES,
    )
    .unwrap_err();
    assert!(error.to_string().contains("--force"), "{error}");
}
