//! How much faster than real time rolls become audio: the first 30 pieces of the bundled test
//! split (benchmark grid, 120 bpm), rendered to WAV by the system's General MIDI SoundFont and by
//! the built-in synthesiser, one thread.
//!
//! `cargo bench -p pipeline --bench audio`. Figures go to BENCHMARKS.md.

use std::time::Instant;

use pianoroll::audio::{SAMPLE_RATE, Synth, render_wav};
use pipeline::dataset::{BuildOptions, Split, build};
use pipeline::schema::read_split;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/nottingham");
    build(&data, &dir.path().join("d"), &BuildOptions::default()).unwrap();
    let (settings, pieces) =
        read_split(&dir.path().join("d").join(Split::Test.file_name())).unwrap();
    let pieces = &pieces[..30];
    let mut synths = vec![Synth::BuiltIn];
    match Synth::load(None).unwrap() {
        Synth::BuiltIn => println!("no SoundFont found: the built-in synthesiser only"),
        found => synths.insert(0, found),
    }
    for synth in &synths {
        let started = Instant::now();
        let mut audio_seconds = 0.0;
        for piece in pieces {
            let wav = render_wav(&piece.roll, settings.grid, None, synth);
            audio_seconds += (wav.len() - 44) as f64 / f64::from(SAMPLE_RATE * 4);
        }
        let took = started.elapsed().as_secs_f64();
        println!(
            "{}: {:.0} s of music from {} pieces in {took:.2} s, {:.0}x real time",
            synth.describe(),
            audio_seconds,
            pieces.len(),
            audio_seconds / took
        );
    }
}
