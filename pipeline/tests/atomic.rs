//! A dataset appears whole or not at all, and a failed or interrupted run keeps what was there.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use pianoroll_tests::nottingham;
use pianoroll_tests::smf::*;
use pipeline::dataset::{BuildError, BuildOptions, Manifest, build};

fn entries(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_interrupted_build_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("dataset");
    let options = BuildOptions {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..Default::default()
    };
    let error = build(&nottingham(), &output, &options).unwrap_err();
    assert!(matches!(error, BuildError::Interrupted), "{error}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn a_failed_forced_rebuild_keeps_the_old_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.mid"), scale()).unwrap();
    let output = dir.path().join("dataset");
    build(&input, &output, &BuildOptions::default()).unwrap();
    let before = Manifest::read(&output).unwrap();

    std::fs::write(input.join("b.mid"), b"broken").unwrap();
    let strict = BuildOptions {
        force: true,
        strict: true,
        ..Default::default()
    };
    let error = build(&input, &output, &strict).unwrap_err();
    assert!(
        error.to_string().contains("b.mid: not a MIDI file"),
        "{error}"
    );
    assert_eq!(Manifest::read(&output).unwrap(), before);
    assert_eq!(entries(dir.path()), vec!["dataset", "input"]);
    assert_eq!(
        entries(&output),
        vec!["manifest.json", "test.arrow", "train.arrow", "valid.arrow"]
    );
}

#[test]
fn force_never_replaces_a_folder_that_is_not_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.mid"), scale()).unwrap();
    let precious = dir.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("thesis.tex"), b"years of work").unwrap();
    let options = BuildOptions {
        force: true,
        ..Default::default()
    };
    let error = build(&input, &precious, &options).unwrap_err();
    assert!(matches!(error, BuildError::OutputNotDataset(_)), "{error}");
    assert_eq!(entries(&precious), vec!["thesis.tex"]);
}
