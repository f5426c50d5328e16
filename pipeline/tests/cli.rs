//! The `pipeline` binary, run as a user would: on the bundled data and on crafted folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pianoroll_tests::nottingham;
use pianoroll_tests::smf::*;
use pianoroll_tests::{assert_ended_quietly, run_with_closed_stdout};
use pipeline::dataset::{Manifest, Split};
use pipeline::schema::read_split;

fn pipeline(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run pipeline")
}

fn run_ok(args: &[&std::ffi::OsStr]) -> String {
    let out = pipeline(args);
    assert!(
        out.status.success(),
        "pipeline {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// A folder of a few valid files and one of each kind of unreadable file.
fn mixed_folder(root: &Path) -> PathBuf {
    let input = root.join("mixed");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::write(input.join("scale.mid"), scale()).unwrap();
    std::fs::write(input.join("sub/scale copy.MIDI"), scale()).unwrap();
    std::fs::write(input.join("empty.mid"), b"").unwrap();
    std::fs::write(input.join("text.mid"), b"just text").unwrap();
    std::fs::write(input.join("truncated.mid"), &scale()[..30]).unwrap();
    std::fs::write(input.join("notes.txt"), b"not a .mid: ignored").unwrap();
    input
}

#[test]
fn build_records_bad_files_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = mixed_folder(dir.path());
    let output = dir.path().join("dataset");
    let stdout = run_ok(&[os("build"), input.as_os_str(), os("-o"), output.as_os_str()]);
    assert!(stdout.contains("2 pieces"), "{stdout}");
    assert!(stdout.contains("3 errors"), "{stdout}");

    let manifest = Manifest::read(&output).unwrap();
    assert_eq!(
        (manifest.files, manifest.pieces, manifest.errors),
        (5, 2, 3)
    );
    let failures: Vec<(&str, &str)> = manifest.failures().collect();
    assert_eq!(
        failures,
        vec![
            ("empty.mid", "empty file"),
            ("text.mid", "not a MIDI file (no MThd header)"),
            ("truncated.mid", failures[2].1),
        ]
    );
    assert!(failures[2].1.starts_with("malformed MIDI"), "{failures:?}");
    // All three split files exist and hold the two pieces between them.
    let mut ids = Vec::new();
    for split in Split::ALL {
        let (_, pieces) = read_split(&output.join(split.file_name())).unwrap();
        ids.extend(pieces.into_iter().map(|p| p.id));
    }
    ids.sort();
    assert_eq!(ids, vec!["scale", "sub/scale copy"]);
}

#[test]
fn strict_stops_at_the_first_bad_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = mixed_folder(dir.path());
    let output = dir.path().join("dataset");
    let out = pipeline(&[
        os("build"),
        input.as_os_str(),
        os("-o"),
        output.as_os_str(),
        os("--strict"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("empty.mid: empty file"), "{stderr}");
    assert!(!output.exists());
    assert_no_leftovers(dir.path());
}

/// Nothing but the input and (maybe) the dataset: no temporary folders left behind.
fn assert_no_leftovers(root: &Path) {
    let names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "mixed" && n != "dataset")
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn an_existing_dataset_is_kept_without_force_and_replaced_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = mixed_folder(dir.path());
    let output = dir.path().join("dataset");
    let build = |extra: &[&str]| {
        let mut args = vec![os("build"), input.as_os_str(), os("-o"), output.as_os_str()];
        args.extend(extra.iter().map(os));
        pipeline(&args)
    };
    assert!(build(&[]).status.success());
    let before = std::fs::read(output.join("manifest.json")).unwrap();

    let refused = build(&["--seconds", "0.3"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read(output.join("manifest.json")).unwrap(), before);

    assert!(build(&["--seconds", "0.3", "--force"]).status.success());
    let manifest = Manifest::read(&output).unwrap();
    assert_eq!(
        manifest.settings.grid,
        pianoroll::Grid::Seconds { micros: 300_000 }
    );
    assert_no_leftovers(dir.path());
}

#[test]
fn bad_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = mixed_folder(dir.path());
    let output = dir.path().join("dataset");
    for (flag, value, expect) in [
        ("--split", "0.5,0.6,0.1", "sum to 1"),
        ("--seconds", "0", "--seconds 0"),
        ("--frames-per-beat", "100", "--frames-per-beat 100"),
    ] {
        let out = pipeline(&[
            os("build"),
            input.as_os_str(),
            os("-o"),
            output.as_os_str(),
            os(flag),
            os(value),
        ]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{flag} {value}: {stderr}");
    }
    let out = pipeline(&[
        os("build"),
        os("/no/such/folder"),
        os("-o"),
        output.as_os_str(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/folder is not a folder"));
    assert!(!output.exists());
}

#[cfg(unix)]
#[test]
fn non_utf8_file_names_get_distinct_ids() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    for name in [&b"caf\xe9.mid"[..], b"caf\xe8.mid"] {
        std::fs::write(input.join(std::ffi::OsStr::from_bytes(name)), scale()).unwrap();
    }
    let output = dir.path().join("dataset");
    run_ok(&[
        os("build"),
        input.as_os_str(),
        os("-o"),
        output.as_os_str(),
        os("--split"),
        os("1,0,0"),
    ]);
    let (_, pieces) = read_split(&output.join("train.arrow")).unwrap();
    assert_eq!(pieces.len(), 2);
    assert_ne!(pieces[0].id, pieces[1].id);
    assert!(
        pieces.iter().all(|p| p.source == "caf\u{fffd}.mid"),
        "{pieces:?}"
    );
}

#[test]
fn stats_and_render_on_the_bundled_data() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("nottingham");
    run_ok(&[
        os("build"),
        nottingham().as_os_str(),
        os("-o"),
        output.as_os_str(),
    ]);

    let table = run_ok(&[os("stats"), output.as_os_str()]);
    assert!(table.contains("train"), "{table}");
    assert!(table.contains("pitch histogram"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(&[os("stats"), output.as_os_str(), os("--json")])).unwrap();
    let test = &json["splits"][2];
    assert_eq!(test["split"], "test");
    assert_eq!(test["pieces"], 170);
    // About 4 of 88 keys sound per frame: a single shared rate costs about 16 nats per frame,
    // per-key rates less, and both far more than zero.
    let single = test["baseline_single_rate_nll"].as_f64().unwrap();
    let per_key = test["baseline_key_rates_nll"].as_f64().unwrap();
    assert!(
        (15.0..17.5).contains(&single),
        "single-rate baseline {single}"
    );
    assert!(
        (5.0..single).contains(&per_key),
        "per-key baseline {per_key}"
    );

    // A dataset piece to MIDI and PNG, and the MIDI back through the grid gives the same roll.
    let (_, pieces) = read_split(&output.join("test.arrow")).unwrap();
    let piece = &pieces[0];
    let midi = dir.path().join("piece.mid");
    let png = dir.path().join("piece.png");
    run_ok(&[
        os("render"),
        output.as_os_str(),
        os("--piece"),
        os(&piece.id),
        os("-o"),
        midi.as_os_str(),
        os("--png"),
        png.as_os_str(),
    ]);
    let again = pianoroll::read_midi(
        &std::fs::read(&midi).unwrap(),
        &pianoroll::RollSettings {
            transpose: pianoroll::Transpose::None,
            ..pianoroll::RollSettings::benchmark()
        },
    )
    .unwrap();
    assert_eq!(again.roll, piece.roll);
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");

    // A MIDI file straight to PNG.
    let source = nottingham()
        .join("test")
        .join(&piece.source["test/".len()..]);
    let png2 = dir.path().join("direct.png");
    let midi2 = dir.path().join("direct.mid");
    run_ok(&[
        os("render"),
        source.as_os_str(),
        os("--png"),
        png2.as_os_str(),
        os("-o"),
        midi2.as_os_str(),
    ]);
    assert!(png2.exists());
    // The file's time signature is written again.
    let settings = pianoroll::RollSettings::benchmark();
    let meter = |path: &std::path::Path| {
        pianoroll::read_midi(&std::fs::read(path).unwrap(), &settings)
            .unwrap()
            .meter
    };
    assert!(meter(&source).is_some());
    assert_eq!(meter(&midi2), meter(&source));

    let missing = pipeline(&[
        os("render"),
        output.as_os_str(),
        os("--piece"),
        os("nope"),
        os("--png"),
        png.as_os_str(),
    ]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no piece with id \"nope\""));
}

/// A dangling symbolic link and a FIFO named like MIDI files are listed in the manifest as
/// skipped, with the reason, and the build neither stops nor blocks on the FIFO.
#[cfg(unix)]
#[test]
fn dangling_links_and_fifos_are_listed_as_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("scale.mid"), scale()).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone.mid"), input.join("dangling.mid")).unwrap();
    let fifo = std::ffi::CString::new(input.join("pipe.mid").into_os_string().into_encoded_bytes())
        .unwrap();
    // SAFETY: a NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let output = dir.path().join("dataset");
    run_ok(&[os("build"), input.as_os_str(), os("-o"), output.as_os_str()]);

    let manifest = Manifest::read(&output).unwrap();
    assert_eq!((manifest.files, manifest.pieces), (3, 1));
    let reason = |name: &str| {
        let record = manifest.inputs.iter().find(|r| r.path == name).unwrap();
        record.error.clone().unwrap_or_default()
    };
    assert!(reason("dangling.mid").contains("dangling symbolic link"));
    assert!(
        reason("pipe.mid").contains("FIFO"),
        "{}",
        reason("pipe.mid")
    );
    assert_eq!(reason("scale.mid"), "");
}

/// A reader that stops early (`pipeline stats DATA | head -2`) ends each printing command
/// quietly, as the platform's tools end: no panic, no "Broken pipe" message.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("scale.mid"), scale()).unwrap();
    let dataset = dir.path().join("dataset");
    let midi = input.join("scale.mid");
    let png = dir.path().join("scale.png");
    let commands: [Vec<&std::ffi::OsStr>; 4] = [
        vec![
            os("build"),
            input.as_os_str(),
            os("-o"),
            dataset.as_os_str(),
        ],
        vec![os("stats"), dataset.as_os_str()],
        vec![os("stats"), dataset.as_os_str(), os("--json")],
        vec![os("render"), midi.as_os_str(), os("--png"), png.as_os_str()],
    ];
    for args in commands {
        let mut pipeline = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        let out = run_with_closed_stdout(pipeline.args(&args));
        assert_ended_quietly(&format!("pipeline {args:?}"), &out);
    }
    assert!(dataset.join("manifest.json").exists() && png.exists());
}

/// A file over `--max-file-mb` is recorded as an error without being read (a sparse 20 MB
/// file costs no disk), and a name with a newline keeps its log line whole.
#[test]
fn large_files_are_refused_unread_and_odd_names_log_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("scale.mid"), scale()).unwrap();
    let huge = std::fs::File::create(input.join("huge.mid")).unwrap();
    huge.set_len(20_000_000).unwrap();
    std::fs::write(input.join("two\nlines.mid"), b"not MIDI").unwrap();
    let output = dir.path().join("dataset");
    let out = pipeline(&[os("build"), input.as_os_str(), os("-o"), output.as_os_str()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let manifest = Manifest::read(&output).unwrap();
    let failures: Vec<(&str, &str)> = manifest.failures().collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(
        failures[0],
        (
            "huge.mid",
            "20.0 MB, larger than the limit of 16.0 MB (--max-file-mb)"
        )
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("two\\nlines.mid: not a MIDI file")),
        "{stderr}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("lines.mid")),
        "{stderr}"
    );

    // With a higher limit the file is read, and found to be no MIDI file.
    let out = pipeline(&[
        os("build"),
        input.as_os_str(),
        os("-o"),
        output.as_os_str(),
        os("--force"),
        os("--max-file-mb"),
        os("25"),
    ]);
    assert!(out.status.success());
    let manifest = Manifest::read(&output).unwrap();
    assert!(
        manifest
            .failures()
            .any(|(path, error)| path == "huge.mid" && error.contains("MIDI")),
        "{:?}",
        manifest.failures().collect::<Vec<_>>()
    );
}

/// A MAT-file of 100 KB whose compressed element would inflate to 100 MB stops at the limit,
/// with the limit and the flag that raises it in the message, and writes nothing.
#[test]
fn import_mat_bounds_what_a_compressed_element_inflates_to() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut element = 14u32.to_le_bytes().to_vec();
    element.extend(100_000_000u32.to_le_bytes());
    element.resize(100_000_008, 0);
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&element).unwrap();
    let packed = zlib.finish().unwrap();
    let mut mat = b"MATLAB 5.0 MAT-file, a zlib bomb".to_vec();
    mat.resize(124, b' ');
    mat.extend([0x00, 0x01, b'I', b'M']);
    mat.extend(15u32.to_le_bytes());
    mat.extend((packed.len() as u32).to_le_bytes());
    mat.extend(&packed);
    let path = dir.path().join("bomb.mat");
    std::fs::write(&path, &mat).unwrap();
    let output = dir.path().join("dataset");
    let out = pipeline(&[
        os("import-mat"),
        path.as_os_str(),
        os("-o"),
        output.as_os_str(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bomb.mat: byte 128: compressed element inflates to more than 64.0 MB")
            && stderr.contains("--max-element-mb"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["bomb.mat"], "no dataset, no staging folder");
}

/// `pipeline stats DATASET --music FOLDER` measures a folder of MIDI files on the dataset's grid
/// against a split: the test split's own files give the test split's statistics and a distance
/// of 0, a few of them something else; a missing or empty folder, an unreadable file and
/// `--split` without `--music` are refused by name.
#[test]
fn music_stats_of_a_midi_folder_against_a_split() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("nottingham");
    run_ok(&[
        os("build"),
        nottingham().as_os_str(),
        os("-o"),
        dataset.as_os_str(),
    ]);
    let mut test_files: Vec<PathBuf> = std::fs::read_dir(nottingham().join("test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    test_files.sort();
    let copy = |name: &str, files: &[PathBuf]| {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        for file in files {
            std::fs::copy(file, folder.join(file.file_name().unwrap())).unwrap();
        }
        folder
    };
    let music_json = |folder: &Path, extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            os("stats"),
            dataset.as_os_str(),
            os("--music"),
            folder.as_os_str(),
            os("--json"),
        ];
        args.extend(extra.iter().map(os));
        serde_json::from_str(&run_ok(&args)).unwrap()
    };

    // The whole test split as MIDI files: the same rolls, so the same statistics.
    let all = copy("all", &test_files);
    let same = music_json(&all, &[]);
    assert_eq!(same["split"], "test");
    assert_eq!(same["samples"], same["reference"], "{same}");
    assert_eq!(same["samples"]["pieces"], 170);
    assert_eq!(same["pitch_class_set_distance"], 0.0);
    let polyphony = same["reference"]["polyphony"].as_f64().unwrap();
    assert!((3.0..5.0).contains(&polyphony), "{same}");
    let triads = same["reference"]["triad_share"].as_f64().unwrap();
    assert!((0.3..0.95).contains(&triads), "{same}");
    let onsets = same["reference"]["onsets_per_frame"].as_f64().unwrap();
    assert!((0.3..2.0).contains(&onsets), "{same}");

    // Three of them against the training split: a different collection, a distance in (0, 1).
    let few = copy("few", &test_files[..3]);
    let against_train = music_json(&few, &["--split", "train"]);
    assert_eq!(against_train["split"], "train");
    assert_eq!(against_train["samples"]["pieces"], 3);
    assert!(against_train["reference"]["pieces"].as_u64().unwrap() > 500);
    let distance = against_train["pitch_class_set_distance"].as_f64().unwrap();
    assert!(distance > 0.0 && distance < 1.0, "{against_train}");
    // --as-written reads the files without the dataset's move to C, and says so.
    let as_written = music_json(&few, &["--as-written"]);
    assert_eq!(as_written["transpose"], "none");
    assert_eq!(as_written["samples"]["pieces"], 3);

    // The table names both rows and the distance.
    let table = run_ok(&[
        os("stats"),
        dataset.as_os_str(),
        os("--music"),
        few.as_os_str(),
    ]);
    assert!(table.contains("MIDI files"), "{table}");
    assert!(table.contains("polyphony"), "{table}");
    assert!(table.contains("pitch-class-set distance"), "{table}");

    // Refusals name what is wrong.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let bad = copy("bad", &test_files[..1]);
    std::fs::write(bad.join("broken.mid"), b"not MIDI").unwrap();
    let missing = dir.path().join("missing");
    let cases: [(Vec<&std::ffi::OsStr>, String); 5] = [
        (
            vec![os("--music"), missing.as_os_str()],
            format!("--music: input {} is not a folder", missing.display()),
        ),
        (
            vec![os("--music"), empty.as_os_str()],
            format!("--music: {}: no .mid or .midi files", empty.display()),
        ),
        (
            vec![os("--music"), bad.as_os_str()],
            format!("{}: not a MIDI file", bad.join("broken.mid").display()),
        ),
        (vec![os("--split"), os("test")], "--music".to_owned()),
        (
            vec![os("--music"), few.as_os_str(), os("--split"), os("nope")],
            "--split".to_owned(),
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec![os("stats"), dataset.as_os_str()];
        args.extend(flags);
        let out = pipeline(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
    let no_dataset = dir.path().join("no-dataset");
    let out = pipeline(&[
        os("stats"),
        no_dataset.as_os_str(),
        os("--music"),
        few.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}", no_dataset.join("test.arrow").display())),
        "{stderr}"
    );
}
