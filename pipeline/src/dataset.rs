//! `pipeline build`: a folder of MIDI files → a dataset folder.
//!
//! ```text
//! DATASET/
//!   train.arrow  valid.arrow  test.arrow   one Arrow IPC file per split (see `schema`)
//!   manifest.json                          settings, counts, per-file errors, input checksums
//! ```
//!
//! Files are processed in parallel (rayon) in fixed-size chunks taken in path order; each chunk's
//! pieces are appended to the split writers before the next chunk is read. Memory therefore stays
//! bounded by the chunk, not the corpus, and the output is byte-for-byte reproducible.
//!
//! The dataset appears atomically: everything is written into a hidden temporary folder beside
//! the destination and renamed into place only when complete. A failed or interrupted run removes
//! its temporary folder and leaves an existing dataset untouched.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::schema::{PieceRecord, SCHEMA_VERSION, SchemaError, SplitWriter, read_split};
use pianoroll::atomic::{self, Refusal};
use pianoroll::grid::RollSettings;
use pianoroll::midi::{NoteCounts, read_midi};
use pianoroll::roll::{KEY_COUNT, LOWEST_PITCH, PianoRoll};

pub const MANIFEST_FILE: &str = "manifest.json";

/// Files per parallel chunk: large enough to keep both cores busy, small enough that a
/// 100,000-file corpus never has more than this many files in memory.
const CHUNK_FILES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }

    /// File name of this split's Arrow file inside a dataset folder.
    pub fn file_name(self) -> String {
        format!("{}.arrow", self.as_str())
    }
}

/// Fractions of a hash split; they sum to 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions {
            train: 0.8,
            valid: 0.1,
            test: 0.1,
        }
    }
}

impl std::str::FromStr for SplitFractions {
    type Err = String;

    /// "0.8,0.1,0.1": train, valid, test; non-negative, summing to 1.
    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<f64> = text
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("expected three numbers like 0.8,0.1,0.1 ({e})"))?;
        let [train, valid, test] = parts[..] else {
            return Err(format!(
                "expected three fractions (train,valid,test), got {}",
                parts.len()
            ));
        };
        if parts.iter().any(|f| !f.is_finite() || *f < 0.0) {
            return Err("fractions must be non-negative numbers".into());
        }
        let sum = train + valid + test;
        if (sum - 1.0).abs() > 1e-6 {
            return Err(format!("fractions must sum to 1, they sum to {sum}"));
        }
        Ok(SplitFractions { train, valid, test })
    }
}

impl SplitFractions {
    /// Deterministic split of a relative path: the first 8 bytes of its SHA-256 as a number in
    /// [0, 1), compared with the cumulative fractions. Stable across machines and runs, and a
    /// file keeps its split when others are added or removed.
    pub fn split_of(&self, relative_path: &[u8]) -> Split {
        let digest = Sha256::digest(relative_path);
        let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        let u = head as f64 / 2f64.powi(64);
        if u < self.train {
            Split::Train
        } else if u < self.train + self.valid {
            Split::Valid
        } else {
            Split::Test
        }
    }
}

/// Options of [`build`].
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub settings: RollSettings,
    /// Used when the input has no `train/`, `valid/`, `test/` folders.
    pub fractions: SplitFractions,
    /// Replace an existing dataset at the destination.
    pub force: bool,
    /// Stop at the first file that cannot be read instead of recording it and going on.
    pub strict: bool,
    /// Larger files are recorded as errors without being read: a file is read whole, one per
    /// worker thread, so this bounds the build's memory whatever the folder holds.
    pub max_file_bytes: u64,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
    /// Set from another thread (a Ctrl-C handler) to stop between chunks; nothing is written.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The default of [`BuildOptions::max_file_bytes`]: 16 MB, some forty times the largest MIDI
/// file of a long piano performance.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16_000_000;

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            settings: RollSettings::benchmark(),
            fractions: SplitFractions::default(),
            force: false,
            strict: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            progress: false,
            cancel: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("input {0} is not a folder")]
    InputNotFolder(PathBuf),
    #[error("{0} already exists; pass --force to replace it")]
    OutputExists(PathBuf),
    #[error("{0} exists and is not a dataset (no manifest.json); refusing to replace it")]
    OutputNotDataset(PathBuf),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] SchemaError),
    #[error("{path}: {error} (--strict stops at the first unreadable file)")]
    Strict { path: String, error: String },
    #[error("interrupted; nothing was written")]
    Interrupted,
    #[error("{path}: {error}")]
    Unreadable { path: PathBuf, error: String },
    #[error("{0}: no .mid or .midi files in it")]
    NoMidiFiles(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |error| BuildError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Where the splits came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSource {
    /// The input's `train/`, `valid/`, `test/` folders.
    Folders,
    /// [`SplitFractions::split_of`] on each relative path.
    Hash(SplitFractions),
    /// Published piano rolls imported from a MAT-file's cell arrays, one per split (train,
    /// valid, test), transposed as published ([`crate::published`]).
    Published {
        file: String,
        variables: Vec<String>,
    },
}

/// A MIDI file found in the input.
#[derive(Clone, Debug)]
pub struct InputFile {
    pub path: PathBuf,
    /// Path relative to the input folder, `/`-separated; U+FFFD marks bytes that were not UTF-8.
    pub relative: String,
    /// The relative path's raw bytes (what the hash split and ids are made from).
    relative_bytes: Vec<u8>,
    pub split: Split,
    /// Why the entry is not read (not a regular file), if so.
    pub skipped: Option<String>,
}

impl InputFile {
    /// The row id: the relative path without its extension. A path that is not UTF-8 gets a
    /// short hash of its raw bytes appended so that two such names cannot collide.
    pub fn id(&self) -> String {
        let stem = self
            .relative
            .rsplit_once('.')
            .map_or(self.relative.as_str(), |(stem, _)| stem);
        if std::str::from_utf8(&self.relative_bytes).is_ok() {
            stem.to_owned()
        } else {
            let digest = Sha256::digest(&self.relative_bytes);
            format!(
                "{stem}~{:02x}{:02x}{:02x}{:02x}",
                digest[0], digest[1], digest[2], digest[3]
            )
        }
    }
}

fn is_midi(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes().to_ascii_lowercase();
    name.ends_with(b".mid") || name.ends_with(b".midi")
}

/// Every `.mid`/`.midi` entry below `root`, in path order, with the reason it cannot be read
/// when it is not a regular file. Symlinked files are read, symlinked folders are not followed
/// (no cycles); a dangling link, a FIFO (reading one would block), a socket or a device named
/// like a MIDI file is listed as skipped, so the manifest says what was passed over and why.
fn walk(root: &Path, found: &mut Vec<(PathBuf, Option<String>)>) -> Result<(), BuildError> {
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .map_err(io_error(root))?
        .collect::<Result<_, _>>()
        .map_err(io_error(root))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_dir() {
            walk(&path, found)?;
        } else if is_midi(&entry.file_name()) {
            let skipped = unreadable_reason(&path, file_type.is_symlink());
            found.push((path, skipped));
        }
    }
    Ok(())
}

/// Why `path` is not a regular file that can be read, if it is not one.
fn unreadable_reason(path: &Path, is_link: bool) -> Option<String> {
    let link = if is_link { "a symbolic link to " } else { "" };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => None,
        Ok(meta) => {
            let kind = if meta.is_dir() {
                "a folder (not followed)"
            } else {
                special_file_kind(&meta)
            };
            Some(format!("skipped: {link}{kind}, not a regular file"))
        }
        Err(e) if is_link && e.kind() == std::io::ErrorKind::NotFound => {
            Some("skipped: a dangling symbolic link (its target does not exist)".into())
        }
        Err(e) => Some(format!("cannot read: {e}")),
    }
}

#[cfg(unix)]
fn special_file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_: &std::fs::Metadata) -> &'static str {
    "a special file"
}

fn relative_bytes(path: &Path, root: &Path) -> Vec<u8> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<&[u8]> = relative
        .components()
        .map(|c| c.as_os_str().as_encoded_bytes())
        .collect();
    parts.join(&b'/')
}

/// The MIDI files of `input` with their splits.
pub fn discover(
    input: &Path,
    fractions: &SplitFractions,
) -> Result<(SplitSource, Vec<InputFile>), BuildError> {
    if !input.is_dir() {
        return Err(BuildError::InputNotFolder(input.to_owned()));
    }
    let split_folders: Vec<Split> = Split::ALL
        .into_iter()
        .filter(|s| input.join(s.as_str()).is_dir())
        .collect();
    let mut files = Vec::new();
    let source = if split_folders.is_empty() {
        let mut paths = Vec::new();
        walk(input, &mut paths)?;
        for (path, skipped) in paths {
            let bytes = relative_bytes(&path, input);
            files.push(InputFile {
                skipped,
                split: fractions.split_of(&bytes),
                relative: String::from_utf8_lossy(&bytes).into_owned(),
                relative_bytes: bytes,
                path,
            });
        }
        SplitSource::Hash(*fractions)
    } else {
        for split in split_folders {
            let mut paths = Vec::new();
            walk(&input.join(split.as_str()), &mut paths)?;
            for (path, skipped) in paths {
                let bytes = relative_bytes(&path, input);
                files.push(InputFile {
                    skipped,
                    split,
                    relative: String::from_utf8_lossy(&bytes).into_owned(),
                    relative_bytes: bytes,
                    path,
                });
            }
        }
        SplitSource::Folders
    };
    Ok((source, files))
}

/// Per-split part of the manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    pub file: String,
    pub pieces: u64,
    pub frames: u64,
    pub notes: NoteCounts,
    /// Pieces per transposition in semitones.
    pub transpositions: BTreeMap<i8, u64>,
}

/// One input file as the manifest records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub path: String,
    pub split: Split,
    pub bytes: u64,
    /// Absent when the file could not be read at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why the file is not in the dataset; absent when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `manifest.json`: everything needed to know what a dataset is and to reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub schema_version: String,
    pub tool: String,
    pub tool_version: String,
    pub settings: RollSettings,
    pub lowest_pitch: u8,
    pub key_count: usize,
    pub split_source: SplitSource,
    pub splits: BTreeMap<Split, SplitSummary>,
    pub files: u64,
    pub pieces: u64,
    pub errors: u64,
    /// SHA-256 over the sorted (path, sha256) list of all inputs.
    pub inputs_sha256: String,
    pub inputs: Vec<InputRecord>,
}

impl Manifest {
    pub const FORMAT: &str = "pianoroll-dataset";

    pub fn read(dataset: &Path) -> Result<Manifest, BuildError> {
        let path = dataset.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        serde_json::from_str(&text).map_err(|e| BuildError::Io {
            path,
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// Files that could not be read, with why.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inputs
            .iter()
            .filter_map(|i| i.error.as_deref().map(|e| (i.path.as_str(), e)))
    }

    pub fn total_notes(&self) -> NoteCounts {
        let mut total = NoteCounts::default();
        for split in self.splits.values() {
            total += split.notes;
        }
        total
    }
}

/// What a finished build reports.
#[derive(Debug)]
pub struct BuildSummary {
    pub manifest: Manifest,
    pub bytes_read: u64,
    pub seconds: f64,
}

impl BuildSummary {
    /// The one-line summary printed at the end of `pipeline build`.
    pub fn line(&self, output: &Path) -> String {
        let m = &self.manifest;
        let per_split: Vec<String> = m
            .splits
            .iter()
            .map(|(split, s)| format!("{} {}", split.as_str(), s.pieces))
            .collect();
        let frames: u64 = m.splits.values().map(|s| s.frames).sum();
        let notes = m.total_notes();
        format!(
            "{}: {} pieces ({}), {} frames, {} of {} notes vanished at {}, {} errors, {:.1} MB read in {:.2} s",
            output.display(),
            m.pieces,
            per_split.join(", "),
            frames,
            notes.vanished,
            notes.notes,
            m.settings.grid.describe(),
            m.errors,
            self.bytes_read as f64 / 1e6,
            self.seconds,
        )
    }
}

/// The outcome for one input file.
struct Processed {
    record: InputRecord,
    piece: Option<(PieceRecord, NoteCounts)>,
}

/// The file's bytes, unless it is larger than `max_bytes` (checked before reading, and again
/// while reading, for a file that grows in between); `limit_flag` names the flag that sets the
/// limit, if the command has one.
fn read_bounded(path: &Path, max_bytes: u64, limit_flag: Option<&str>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let too_large = |size: u64| {
        format!(
            "{:.1} MB, larger than the limit of {:.1} MB{}",
            size as f64 / 1e6,
            max_bytes as f64 / 1e6,
            limit_flag.map_or_else(String::new, |flag| format!(" ({flag})"))
        )
    };
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if size > max_bytes {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn process(file: &InputFile, settings: &RollSettings, max_file_bytes: u64) -> Processed {
    let read = match &file.skipped {
        Some(reason) => Err(reason.clone()),
        None => read_bounded(&file.path, max_file_bytes, Some("--max-file-mb")),
    };
    let (bytes, sha256, result) = match read {
        Ok(bytes) => {
            let result = read_midi(&bytes, settings).map_err(|e| e.to_string());
            (
                bytes.len() as u64,
                Some(hex(&Sha256::digest(&bytes))),
                result,
            )
        }
        Err(reason) => (0, None, Err(reason)),
    };
    let record = InputRecord {
        path: file.relative.clone(),
        split: file.split,
        bytes,
        sha256,
        error: result.as_ref().err().cloned(),
    };
    let piece = result.ok().map(|piece| {
        let row = PieceRecord {
            id: file.id(),
            split: file.split.as_str().to_owned(),
            source: file.relative.clone(),
            title: piece.title,
            key: piece.key.map(|k| k.name()),
            key_source: piece.key_source.as_str().to_owned(),
            transpose: piece.transpose,
            roll: piece.roll,
        };
        (row, piece.counts)
    });
    Processed { record, piece }
}

/// `text` with control characters escaped (`\n` as `\\n`): a file name with a newline would
/// otherwise split its log line in two.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Lower-case hexadecimal, as the manifest and model cards write digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Build a dataset from the MIDI files in `input` at `output`.
pub fn build(
    input: &Path,
    output: &Path,
    options: &BuildOptions,
) -> Result<BuildSummary, BuildError> {
    let started = Instant::now();
    check_replaceable(output, options.force)?;
    let (split_source, files) = discover(input, &options.fractions)?;

    // Dropped (and so deleted) on every early return: no half dataset is ever left behind.
    let staging = atomic::staging_beside(output).map_err(io_error(output))?;

    let mut writers = BTreeMap::new();
    let mut splits = BTreeMap::new();
    for split in Split::ALL {
        let file = split.file_name();
        writers.insert(
            split,
            SplitWriter::create(&staging.path().join(&file), &options.settings)?,
        );
        splits.insert(
            split,
            SplitSummary {
                file,
                ..Default::default()
            },
        );
    }

    let progress = if options.progress {
        ProgressBar::new(files.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} files {per_sec} {eta}")
                .expect("valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut inputs = Vec::with_capacity(files.len());
    let mut bytes_read = 0;
    for chunk in files.chunks(CHUNK_FILES) {
        if options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(BuildError::Interrupted);
        }
        let processed: Vec<Processed> = chunk
            .par_iter()
            .map(|file| process(file, &options.settings, options.max_file_bytes))
            .collect();
        let mut rows: BTreeMap<Split, Vec<PieceRecord>> = BTreeMap::new();
        for p in processed {
            bytes_read += p.record.bytes;
            if let Some(error) = &p.record.error {
                if options.strict {
                    return Err(BuildError::Strict {
                        path: p.record.path.clone(),
                        error: error.clone(),
                    });
                }
                let path = printable(&p.record.path);
                progress.suspend(|| tracing::warn!("{path}: {error}"));
            }
            if let Some((row, counts)) = p.piece {
                let summary = splits.get_mut(&p.record.split).expect("all splits");
                summary.pieces += 1;
                summary.frames += row.roll.len() as u64;
                summary.notes += counts;
                *summary.transpositions.entry(row.transpose).or_default() += 1;
                rows.entry(p.record.split).or_default().push(row);
            }
            inputs.push(p.record);
        }
        for (split, rows) in rows {
            writers.get_mut(&split).expect("all splits").write(&rows)?;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    for writer in writers.into_values() {
        writer.finish()?;
    }

    let mut inputs_digest = Sha256::new();
    for input in &inputs {
        inputs_digest.update(input.path.as_bytes());
        inputs_digest.update([0]);
        inputs_digest.update(input.sha256.as_deref().unwrap_or("unreadable").as_bytes());
        inputs_digest.update([b'\n']);
    }
    let errors = inputs.iter().filter(|i| i.error.is_some()).count() as u64;
    let manifest = Manifest {
        format: Manifest::FORMAT.into(),
        schema_version: SCHEMA_VERSION.into(),
        tool: env!("CARGO_PKG_NAME").into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        settings: options.settings,
        lowest_pitch: LOWEST_PITCH,
        key_count: KEY_COUNT,
        split_source,
        pieces: splits.values().map(|s| s.pieces).sum(),
        splits,
        files: inputs.len() as u64,
        errors,
        inputs_sha256: hex(&inputs_digest.finalize()),
        inputs,
    };
    let manifest_path = staging.path().join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    atomic::write_file(&manifest_path, &json).map_err(io_error(&manifest_path))?;

    publish(staging, output, options)?;
    Ok(BuildSummary {
        manifest,
        bytes_read,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// An existing `output` may only be replaced with `force`, and only if it is a dataset (or an
/// empty folder).
pub(crate) fn check_replaceable(output: &Path, force: bool) -> Result<(), BuildError> {
    atomic::check_replaceable(output, force, MANIFEST_FILE).map_err(|refusal| match refusal {
        Refusal::Exists => BuildError::OutputExists(output.to_owned()),
        Refusal::NotOurs => BuildError::OutputNotDataset(output.to_owned()),
    })
}

/// Put the finished staging folder in place of `output` ([`atomic::publish_folder`]), unless the
/// build was cancelled meanwhile.
fn publish(
    staging: tempfile::TempDir,
    output: &Path,
    options: &BuildOptions,
) -> Result<(), BuildError> {
    if options
        .cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed))
    {
        return Err(BuildError::Interrupted);
    }
    check_replaceable(output, options.force)?;
    atomic::publish_folder(staging, output).map_err(io_error(output))
}

/// The rolls of every `.mid`/`.midi` file below `folder`, in path order (symlinked folders are
/// not followed), read with `settings`: a folder of generated pieces to measure. A file that
/// cannot be read, or is over `max_file_bytes`, is an error naming it rather than a piece left
/// out, since statistics of part of a folder would pass for the whole.
pub fn read_midi_folder(
    folder: &Path,
    settings: &RollSettings,
    max_file_bytes: u64,
) -> Result<Vec<(PathBuf, PianoRoll)>, BuildError> {
    if !folder.is_dir() {
        return Err(BuildError::InputNotFolder(folder.to_owned()));
    }
    let mut found = Vec::new();
    walk(folder, &mut found)?;
    if found.is_empty() {
        return Err(BuildError::NoMidiFiles(folder.to_owned()));
    }
    found
        .into_par_iter()
        .map(|(path, skipped)| {
            let piece = match skipped {
                Some(reason) => Err(reason),
                None => read_bounded(&path, max_file_bytes, None)
                    .and_then(|bytes| read_midi(&bytes, settings).map_err(|e| e.to_string())),
            };
            match piece {
                Ok(piece) => Ok((path, piece.roll)),
                Err(error) => Err(BuildError::Unreadable { path, error }),
            }
        })
        .collect::<Vec<_>>()
        // In path order, so the error is always the first unreadable file's.
        .into_iter()
        .collect()
}

/// Piece `id` of the dataset folder `dataset` and the settings its split was made with, or
/// `None` when no split holds it.
pub fn find_piece(
    dataset: &Path,
    id: &str,
) -> Result<Option<(RollSettings, PieceRecord)>, SchemaError> {
    for split in Split::ALL {
        let (settings, pieces) = read_split(&dataset.join(split.file_name()))?;
        if let Some(piece) = pieces.into_iter().find(|p| p.id == id) {
            return Ok(Some((settings, piece)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_parse_and_validate() {
        let f: SplitFractions = "0.7, 0.2, 0.1".parse().unwrap();
        assert_eq!(f.valid, 0.2);
        assert!("0.5,0.5".parse::<SplitFractions>().is_err());
        assert!("0.8,0.1,0.2".parse::<SplitFractions>().is_err());
        assert!("1.2,-0.1,-0.1".parse::<SplitFractions>().is_err());
        assert!("a,b,c".parse::<SplitFractions>().is_err());
    }

    #[test]
    fn hash_split_is_deterministic_and_near_the_fractions() {
        let fractions = SplitFractions::default();
        let mut counts = BTreeMap::new();
        for i in 0..10_000 {
            let path = format!("folder/piece_{i}.mid");
            let split = fractions.split_of(path.as_bytes());
            assert_eq!(split, fractions.split_of(path.as_bytes()));
            *counts.entry(split).or_insert(0) += 1;
        }
        assert!(
            (7_700..8_300).contains(&counts[&Split::Train]),
            "{counts:?}"
        );
        assert!((800..1_200).contains(&counts[&Split::Valid]), "{counts:?}");
        assert!((800..1_200).contains(&counts[&Split::Test]), "{counts:?}");
    }
}
