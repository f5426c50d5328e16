//! A dataset built by the pipeline reads in pyarrow, pandas and polars (Python) with no custom
//! code, and says the same thing there as in Rust.

use pianoroll_tests::{nottingham, python};
use pipeline::dataset::{BuildOptions, Split, build};
use pipeline::schema::read_split;

const READ_IN_PYTHON: &str = r#"
import json, sys
import pyarrow.ipc, pandas, polars

path = sys.argv[1]
table = pyarrow.ipc.open_file(path).read_all()
frame = table.to_pandas()
pl = polars.read_ipc(path)
first = frame.iloc[0]
print(json.dumps({
    "columns": table.column_names,
    "rows": table.num_rows,
    "pandas_rows": len(frame),
    "polars_rows": pl.height,
    "first_id": first["id"],
    "first_roll": [[int(p) for p in f] for f in first["roll"]],
    "frames_pandas": int(frame["num_frames"].sum()),
    "frames_polars": int(pl["roll"].list.len().sum()),
    "cells_polars": int(pl["roll"].explode().list.len().sum()),
    "metadata": {k.decode(): v.decode() for k, v in table.schema.metadata.items()},
}))
"#;

#[test]
fn pyarrow_pandas_and_polars_read_the_dataset() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("nottingham");
    build(&nottingham(), &output, &BuildOptions::default()).unwrap();

    let path = output.join(Split::Valid.file_name());
    let seen = pianoroll_tests::python_json(&python, READ_IN_PYTHON, &[path.as_os_str()]);

    let (_, pieces) = read_split(&path).unwrap();
    let frames: usize = pieces.iter().map(|p| p.roll.len()).sum();
    let cells: usize = pieces.iter().map(|p| p.roll.active_cells()).sum();
    assert_eq!(seen["rows"], pieces.len());
    assert_eq!(seen["pandas_rows"], pieces.len());
    assert_eq!(seen["polars_rows"], pieces.len());
    assert_eq!(seen["frames_pandas"], frames);
    assert_eq!(seen["frames_polars"], frames);
    assert_eq!(seen["cells_polars"], cells);
    assert_eq!(seen["first_id"], pieces[0].id.as_str());
    let first_roll: Vec<Vec<u8>> = pieces[0]
        .roll
        .frames()
        .iter()
        .map(|f| f.pitches().collect())
        .collect();
    assert_eq!(seen["first_roll"], serde_json::json!(first_roll));
    assert_eq!(seen["metadata"]["pianoroll.lowest_pitch"], "21");
    assert_eq!(seen["columns"][8], "roll");
}

const READ_MIDI_IN_PYTHON: &str = r#"
import json, sys, mido
midi = mido.MidiFile(sys.argv[1])
notes = [m for t in midi.tracks for m in t if m.type == "note_on" and m.velocity > 0]
print(json.dumps({
    "ticks_per_beat": midi.ticks_per_beat,
    "notes": len(notes),
    "pitches": sorted({m.note for m in notes}),
    "seconds": midi.length,
}))
"#;

#[test]
fn mido_reads_the_midi_we_write() {
    let Some(python) = python() else { return };
    let settings = pianoroll::RollSettings::benchmark();
    let source = nottingham().join("test/ashover_simple_chords_11.mid");
    let piece = pianoroll::read_midi(&std::fs::read(source).unwrap(), &settings).unwrap();
    let bytes = pianoroll::write_midi(
        &piece.roll,
        settings.grid,
        &pianoroll::midi::MidiWriteOptions {
            tempo_bpm: Some(120.0),
            title: piece.title.as_deref(),
            key: None,
            meter: None,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("piece.mid");
    std::fs::write(&path, bytes).unwrap();

    let seen = pianoroll_tests::python_json(&python, READ_MIDI_IN_PYTHON, &[path.as_os_str()]);
    let mut pitches: Vec<u8> = piece
        .roll
        .frames()
        .iter()
        .flat_map(|f| f.pitches())
        .collect();
    pitches.sort();
    pitches.dedup();
    assert_eq!(seen["ticks_per_beat"], 480);
    assert_eq!(seen["notes"], piece.roll.note_runs().len());
    assert_eq!(seen["pitches"], serde_json::json!(pitches));
    // Eighth-note frames at 120 bpm are 0.25 s each.
    let seconds = seen["seconds"].as_f64().unwrap();
    assert!(
        (seconds - piece.roll.len() as f64 * 0.25).abs() < 1e-6,
        "{seconds}"
    );
}

const READ_MAT_IN_PYTHON: &str = r#"
import json, sys
import scipy.io
mat = scipy.io.loadmat(sys.argv[1])
splits = {}
for split, variable in [("train", "traindata"), ("valid", "validdata"), ("test", "testdata")]:
    cells = mat[variable]
    pieces = []
    for i in range(cells.shape[1]):
        roll = cells[0, i]
        pieces.append([[21 + int(k) for k in frame.nonzero()[0]] for frame in roll])
    splits[split] = pieces
print(json.dumps(splits))
"#;

/// The import of the published rolls holds, piece for piece and frame for frame, what scipy
/// reads from the MAT-file.
#[test]
fn scipy_reads_the_published_rolls_as_the_import_does() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("published");
    let mat = pianoroll_tests::published_rolls();
    pipeline::published::import(
        &mat,
        &output,
        false,
        pipeline::matfile::DEFAULT_MAX_ELEMENT_BYTES,
    )
    .unwrap();
    let seen = pianoroll_tests::python_json(&python, READ_MAT_IN_PYTHON, &[mat.as_os_str()]);
    for split in Split::ALL {
        let (_, pieces) = read_split(&output.join(split.file_name())).unwrap();
        let ours: Vec<Vec<Vec<u8>>> = pieces
            .iter()
            .map(|p| {
                p.roll
                    .frames()
                    .iter()
                    .map(|f| f.pitches().collect())
                    .collect()
            })
            .collect();
        assert_eq!(
            serde_json::json!(ours),
            seen[split.as_str()],
            "{} split",
            split.as_str()
        );
    }
}

/// README's snippet that reads a dataset in Python runs as written, from a folder holding the
/// `out/nottingham` it names; and the sentence before it says to install every package it needs:
/// each module it imports, and pandas, which pyarrow's `to_pandas()` needs.
#[test]
fn the_readmes_python_snippet_runs_and_names_its_packages() {
    let readme = std::fs::read_to_string(pianoroll_tests::repo_root().join("README.md")).unwrap();
    let fence = "```python\n";
    let (intro, snippet) = readme
        .match_indices(fence)
        .map(|(at, _)| {
            let rest = &readme[at + fence.len()..];
            let paragraph = readme[..at].trim_end().rsplit("\n\n").next().unwrap();
            (paragraph, &rest[..rest.find("```").unwrap()])
        })
        .find(|(_, snippet)| snippet.contains("pyarrow.ipc"))
        .expect("README's Python snippet that reads a dataset");
    let installed: Vec<&str> = intro
        .split('`')
        .filter_map(|code| code.strip_prefix("pip install "))
        .flat_map(str::split_whitespace)
        .collect();
    let mut needed: Vec<&str> = snippet
        .lines()
        .filter_map(|line| line.strip_prefix("import "))
        .map(|module| module.split(['.', ' ']).next().unwrap())
        .collect();
    if snippet.contains("to_pandas()") {
        needed.push("pandas");
    }
    for package in needed {
        assert!(
            installed.contains(&package),
            "README's Python snippet needs {package}, but the text before it installs only \
             {installed:?}:\n{intro}"
        );
    }

    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    build(
        &nottingham(),
        &dir.path().join("out/nottingham"),
        &BuildOptions::default(),
    )
    .unwrap();
    let ran = std::process::Command::new(&python)
        .args(["-c", snippet])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "README's snippet failed:\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}
