//! `trainer eval --music`: the music statistics of a model's samples beside its split's, as a
//! table and as JSON, the same on every run (the samples' seeds are fixed), with the sizes it
//! was asked for; its size flags are refused without `--music` and out of range.

mod common;

use std::process::{Command, Output};

use pianoroll::music::MusicCounts;
use pipeline::dataset::Split;

fn trainer(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run trainer")
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

fn stdout_of(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn eval_music_prints_the_samples_statistics_beside_the_splits() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::small_dataset(dir.path(), 3);
    let run = dir.path().join("run");
    stdout_of(trainer(&[
        os("train"),
        os("--device"),
        os("cpu"),
        os("--model"),
        os("lstm"),
        os("--hidden"),
        os("8"),
        os("--layers"),
        os("1"),
        os("--head"),
        os("nade"),
        os("--nade-hidden"),
        os("8"),
        os("--epochs"),
        os("1"),
        os("--data"),
        dataset.as_os_str(),
        os("--out"),
        run.as_os_str(),
    ]));
    let eval = |extra: &[&str]| {
        let mut args = vec![os("eval"), os("--device"), os("cpu"), run.as_os_str()];
        args.extend(extra.iter().map(os));
        stdout_of(trainer(&args))
    };
    let sizes = ["--music", "--music-pieces", "3", "--music-frames", "20"];

    let table = eval(&sizes);
    assert!(table.contains("NLL"), "{table}");
    assert!(
        table.contains("3 samples of 20 frames (seeds 0..3, temperature 1, no primer)"),
        "{table}"
    );
    for row in ["samples", "test", "polyphony", "triads", "onsets/frame"] {
        assert!(table.contains(row), "no {row}: {table}");
    }
    assert!(table.contains("pitch-class-set distance"), "{table}");

    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--json"];
        args.extend(extra);
        serde_json::from_str(&eval(&args)).unwrap()
    };
    let report = json(&sizes);
    let music = &report["music"];
    assert_eq!(music["sampled"]["pieces"], 3, "{report}");
    assert_eq!(music["samples"]["pieces"], 3);
    assert_eq!(music["samples"]["frames"], 60);
    assert_eq!(music["temperature"], 1.0);
    // The reference is the scored split: the small dataset's 3 test pieces.
    assert_eq!(music["reference"]["pieces"], 3);
    for stat in ["silent_share", "onsets_per_frame"] {
        let value = music["samples"][stat].as_f64().unwrap();
        assert!((0.0..=88.0).contains(&value), "{stat} {value}");
    }
    // The split's row is the core's statistics of the split's rolls.
    let (_, pieces) = pipeline::schema::read_split(&dataset.join(Split::Test.file_name())).unwrap();
    let expected = MusicCounts::of(pieces.iter().map(|p| &p.roll)).stats();
    assert_eq!(
        music["reference"],
        serde_json::to_value(expected).unwrap(),
        "{report}"
    );
    match music["pitch_class_set_distance"].as_f64() {
        Some(distance) => assert!((0.0..=1.0).contains(&distance), "{distance}"),
        // A model that stays silent in every frame has no pitch-class sets to compare.
        None => assert_eq!(music["samples"]["silent_share"], 1.0, "{report}"),
    }
    // Fixed seeds: the same samples again.
    assert_eq!(json(&sizes), report);
    // Without --music, no music in the report.
    assert!(json(&[]).get("music").is_none());

    // The size flags need --music and a sensible size.
    for (flags, named) in [
        (&["--music-pieces", "3"][..], "--music"),
        (&["--music", "--music-pieces", "0"][..], "--music-pieces"),
        (&["--music", "--music-frames", "0"][..], "--music-frames"),
    ] {
        let mut args = vec![os("eval"), os("--device"), os("cpu"), run.as_os_str()];
        args.extend(flags.iter().map(os));
        let output = trainer(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
    }
}
