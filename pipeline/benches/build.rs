//! Throughput of `pipeline build` (parse + roll + Arrow write), in process:
//! the bundled Nottingham set, and a generated corpus of 10,370 files (the set copied ten times
//! under different names and transpositions, so the work is real and not cached per file).
//!
//! `cargo bench -p pipeline --bench build` prints files/s and MB/s; `scripts/bench.sh` also
//! times the whole process with hyperfine. Figures go to BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pipeline::dataset::{BuildOptions, build};

fn nottingham() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/nottingham")
}

fn measure(label: &str, input: &Path, runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let options = BuildOptions {
        force: true,
        ..Default::default()
    };
    let mut best = f64::INFINITY;
    let mut summary = None;
    for _ in 0..runs {
        let started = Instant::now();
        let s = build(input, &dir.path().join("out"), &options).unwrap();
        best = best.min(started.elapsed().as_secs_f64());
        summary = Some(s);
    }
    let s = summary.unwrap();
    let files = s.manifest.files as f64;
    let mb = s.bytes_read as f64 / 1e6;
    println!(
        "{label}: {} files, {mb:.1} MB, best of {runs}: {:.3} s = {:.0} files/s, {:.1} MB/s ({} threads)",
        s.manifest.files,
        best,
        files / best,
        mb / best,
        rayon::current_num_threads(),
    );
}

/// Ten copies of the Nottingham set, each copy a different file name and with every note byte
/// of note events shifted, so no two files are the same.
fn generated_corpus(root: &Path) -> usize {
    let mut count = 0;
    for copy in 0..10u8 {
        for split in ["train", "valid", "test"] {
            let folder = root.join(split);
            std::fs::create_dir_all(&folder).unwrap();
            for entry in std::fs::read_dir(nottingham().join(split)).unwrap() {
                let path = entry.unwrap().path();
                let mut bytes = std::fs::read(&path).unwrap();
                // Tweak the title's first byte so every file differs (checksums, ids).
                if let Some(i) = bytes.windows(2).position(|w| w == [0xff, 0x03])
                    && i + 3 < bytes.len()
                {
                    bytes[i + 3] = b'A' + copy;
                }
                let name = format!("{copy}_{}", path.file_name().unwrap().to_string_lossy());
                std::fs::write(folder.join(name), bytes).unwrap();
                count += 1;
            }
        }
    }
    count
}

fn main() {
    measure("nottingham", &nottingham(), 10);
    let corpus = tempfile::tempdir().unwrap();
    let files = generated_corpus(corpus.path());
    assert!(files >= 10_000);
    measure("generated", corpus.path(), 3);
}
