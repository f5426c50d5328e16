//! The run folder: the one owner of its files, their names and formats.
//!
//! ```text
//! RUN/config.json              TrainConfig: everything that decides what the run computes
//!     metrics.csv              one EpochRow per finished epoch
//!     last.safetensors         weights after the last finished epoch
//!     last.optim.safetensors   the optimiser's moments and step (and the weight average)
//!     last.json                Progress: where to resume; the commit point of each epoch
//!     best.safetensors         the weights valid was scored with at the best epoch
//!     best.json                BestEpoch: which epoch that was
//!     curves.png               train and valid NLL per epoch, redrawn every epoch
//!     results.json             Results: valid and test scores of the best weights, at the end
//! ```
//! `config.json` names the dataset by its absolute path, so a run can be scored or resumed
//! from any working directory ([`RunFolder::dataset`] says how the relative paths of run
//! folders made before that are found).
//!
//! Every file is written to a temporary name and renamed ([`pianoroll::atomic`]), so a crash
//! never leaves a torn file. A run folder appears whole, with its `config.json` (assembled
//! beside it and renamed).
//!
//! An epoch ends in three steps, so that a kill at any point leaves a folder that resumes to
//! the same bytes as a run that was never stopped:
//! 1. **stage**: the epoch's checkpoint files are written under names stamped with the epoch
//!    ([`staged_name`]: `epoch-3.last.safetensors`, …), leaving the previous epoch's in place;
//! 2. **commit**: `last.json` is written, holding the epoch's metrics row and the SHA-256 of
//!    every checkpoint file that belongs to it. This one rename is what makes the epoch count;
//! 3. **publish**: the staged files are renamed to their names, `best.json`, `metrics.csv` and
//!    `curves.png` are written from `last.json`.
//!
//! A resume repeats step 3 for the committed epoch (each part of it is idempotent: a staged
//! file that is gone was renamed already), removes the staged files of an epoch that never
//! committed and the temporary files of killed writes, and refuses, naming the files, when a
//! checkpoint file's checksum is not the one `last.json` recorded for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::Device;
use tch::nn::VarStore;

use crate::config::TrainConfig;
use crate::metrics::Scores;
use crate::model::Model;

pub const CONFIG_FILE: &str = "config.json";
pub const METRICS_FILE: &str = "metrics.csv";
pub const LAST_WEIGHTS_FILE: &str = "last.safetensors";
pub const LAST_OPTIMIZER_FILE: &str = "last.optim.safetensors";
pub const LAST_PROGRESS_FILE: &str = "last.json";
pub const BEST_WEIGHTS_FILE: &str = "best.safetensors";
pub const BEST_EPOCH_FILE: &str = "best.json";
pub const CURVES_FILE: &str = "curves.png";
pub const RESULTS_FILE: &str = "results.json";

/// The checkpoint files an epoch stages before it commits, and whose checksums `last.json`
/// records.
pub const CHECKPOINT_FILES: [&str; 3] = [LAST_WEIGHTS_FILE, LAST_OPTIMIZER_FILE, BEST_WEIGHTS_FILE];

/// The name checkpoint file `name` has while `epoch` is staged: `epoch-3.last.safetensors`
/// (the extension stays last: libtorch chooses the format by it).
pub fn staged_name(epoch: usize, name: &str) -> String {
    format!("epoch-{epoch}.{name}")
}

/// Is `file_name` a staged checkpoint file (of any epoch)?
fn is_staged(file_name: &str) -> bool {
    file_name
        .strip_prefix("epoch-")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(epoch, name)| {
            !epoch.is_empty()
                && epoch.bytes().all(|b| b.is_ascii_digit())
                && CHECKPOINT_FILES.contains(&name)
        })
}

/// Fault injection for the tests, which must stop the trainer at each point where a run
/// folder changes: with `PIANOROLL_TRAINER_FAIL_AT_WRITE=N` the process exits with
/// [`FAILED_AT_WRITE_EXIT`] just before its Nth change becomes visible (a file written but not
/// yet renamed into place, whose temporary file is left behind as a kill leaves it; or a
/// rename not yet made). Nothing is cleaned up on the way out, as with a kill.
pub const FAIL_AT_WRITE_VARIABLE: &str = "PIANOROLL_TRAINER_FAIL_AT_WRITE";

/// The exit status of a process stopped by [`FAIL_AT_WRITE_VARIABLE`].
pub const FAILED_AT_WRITE_EXIT: i32 = 86;

/// One change to a run folder is about to become visible (at `path`).
fn change_point(path: &Path) {
    static FAIL_AT: OnceLock<Option<u64>> = OnceLock::new();
    static CHANGES: AtomicU64 = AtomicU64::new(0);
    let fail_at = FAIL_AT.get_or_init(|| {
        let value = std::env::var(FAIL_AT_WRITE_VARIABLE).ok()?;
        // A typo must not let a test pass without stopping anything.
        Some(value.parse().unwrap_or_else(|_| {
            panic!("{FAIL_AT_WRITE_VARIABLE} must be a whole number, got {value:?}")
        }))
    });
    let Some(fail_at) = *fail_at else {
        return;
    };
    let n = CHANGES.fetch_add(1, Ordering::SeqCst) + 1;
    if n == fail_at {
        eprintln!(
            "{FAIL_AT_WRITE_VARIABLE}={fail_at}: exiting before {} changes",
            path.display()
        );
        std::process::exit(FAILED_AT_WRITE_EXIT);
    }
}

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub step: u64,
    pub train_nll: f64,
    pub valid_nll: f64,
    pub valid_bce: f64,
    pub valid_accuracy: f64,
    pub lr: f64,
    pub seconds: f64,
    pub train_frames_per_s: f64,
    pub eval_frames_per_s: f64,
}

impl EpochRow {
    pub const HEADER: &str = "epoch,step,train_nll,valid_nll,valid_bce,valid_accuracy,lr,seconds,train_frames_per_s,eval_frames_per_s";
    const COLUMNS: usize = 10;

    fn csv(&self) -> String {
        format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.2},{:.1},{:.1}",
            self.epoch,
            self.step,
            self.train_nll,
            self.valid_nll,
            self.valid_bce,
            self.valid_accuracy,
            self.lr,
            self.seconds,
            self.train_frames_per_s,
            self.eval_frames_per_s
        )
    }

    fn parse(line: &str) -> Result<EpochRow, String> {
        let f: Vec<f64> = line
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| "not numbers".to_owned())?;
        if f.len() != Self::COLUMNS {
            return Err(format!("expected {} columns", Self::COLUMNS));
        }
        Ok(EpochRow {
            epoch: f[0] as usize,
            step: f[1] as u64,
            train_nll: f[2],
            valid_nll: f[3],
            valid_bce: f[4],
            valid_accuracy: f[5],
            lr: f[6],
            seconds: f[7],
            train_frames_per_s: f[8],
            eval_frames_per_s: f[9],
        })
    }
}

/// `best.json`: the epoch whose weights are in `best.safetensors`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    pub epoch: usize,
    pub step: u64,
    pub valid_nll: f64,
}

/// `last.json`: where a run stands after an epoch; writing it commits the epoch (see the top of
/// this file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub epoch: usize,
    pub step: u64,
    /// Shuffling generator state at the end of the epoch.
    pub rng: u64,
    pub best_epoch: usize,
    pub best_valid_nll: f64,
    /// True when `max_steps` ended training in this epoch.
    pub max_steps_reached: bool,
    /// The first epoch of the settling epochs (`settle_epochs`), once they have begun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_from: Option<usize>,
    /// The epoch's row of `metrics.csv`, kept here so that the row a kill kept out of
    /// `metrics.csv` is written on resume as it was measured. `None` in `last.json` files of
    /// earlier versions, which wrote the row only to `metrics.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<EpochRow>,
    /// SHA-256 (hex) of each of [`CHECKPOINT_FILES`] as this epoch left it (`best.safetensors`
    /// as the best epoch left it); empty in `last.json` files of earlier versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

/// `results.json`: what the run's best weights scored, written when the run ends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub model: String,
    pub parameters: i64,
    pub epochs: usize,
    pub steps: u64,
    pub best_epoch: usize,
    pub valid: Scores,
    pub test: Scores,
    /// NLL per frame of each key at its training rate: the bar any model must clear.
    pub test_key_rate_baseline_nll: f64,
    /// The recipe the run was made from, when it was made from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
}

/// A run folder on disk.
#[derive(Clone, Debug)]
pub struct RunFolder {
    path: PathBuf,
}

impl RunFolder {
    pub fn new(path: &Path) -> RunFolder {
        RunFolder {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The folder's last path component, for tables and legends.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// Refuse a path that is taken: a new run never writes into an existing folder.
    pub fn check_new(path: &Path) -> Result<()> {
        if path.exists() {
            bail!(
                "{} already exists: choose a new run folder, or --resume it",
                path.display()
            );
        }
        Ok(())
    }

    /// Create a new run folder holding `config` (it must not exist yet). It is assembled in a
    /// hidden folder beside `path` and renamed, so a run folder always has its `config.json`
    /// and `--resume` can take any run folder there is.
    pub fn create(path: &Path, config: &TrainConfig) -> Result<RunFolder> {
        RunFolder::check_new(path)?;
        // Absolute, so that the run finds its data from any working directory; not
        // canonicalized, so a dataset reached through a symbolic link stays named by the link.
        let mut config = config.clone();
        config.dataset = std::path::absolute(&config.dataset).with_context(|| {
            format!(
                "--data {}: cannot make it absolute",
                config.dataset.display()
            )
        })?;
        let staging = pianoroll::atomic::staging_beside(path)
            .with_context(|| format!("creating a staging folder beside {}", path.display()))?;
        let bytes = serde_json::to_vec_pretty(&config)?;
        let config_file = staging.path().join(CONFIG_FILE);
        std::fs::write(&config_file, bytes)
            .with_context(|| format!("writing {}", config_file.display()))?;
        change_point(path);
        // A plain rename, not `publish_folder`: that would replace a folder made meanwhile,
        // and a new run never replaces anything.
        let staged = staging.keep();
        if let Err(error) = std::fs::rename(&staged, path) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(error).with_context(|| format!("creating {}", path.display()));
        }
        Ok(RunFolder::new(path))
    }

    /// The run's configuration; an error says when the folder is not a run at all. Its
    /// `dataset` is the folder [`RunFolder::dataset`] finds, when it finds one; otherwise it is
    /// left as recorded (exporting, sampling and comparing need no data), and whatever reads
    /// the data asks [`RunFolder::dataset`] for the error.
    pub fn config(&self) -> Result<TrainConfig> {
        let mut config = self.recorded_config()?;
        if let Ok(dataset) = self.locate_dataset(&config.dataset) {
            config.dataset = dataset;
        }
        Ok(config)
    }

    /// The dataset folder the run trained on. `config.json` records it absolute; run folders
    /// made by earlier versions recorded the `--data` path as given, relative to the folder
    /// training ran in, which was not recorded. Such a path is looked for relative to the
    /// working directory first (where the earlier versions looked), then relative to the
    /// folder holding the run folder and to each folder above it (a run is usually made from
    /// a folder that holds both it and its dataset); the first that is a folder wins. The
    /// error names the field, the path and where it was looked for.
    pub fn dataset(&self) -> Result<PathBuf> {
        let recorded = self.recorded_config()?.dataset;
        self.locate_dataset(&recorded).map_err(|looked_in| {
            anyhow::anyhow!(
                "{}: field `dataset`: no dataset folder {} ({looked_in}); move the dataset \
                 back, or change the field to where it is now",
                self.file(CONFIG_FILE).display(),
                recorded.display(),
            )
        })
    }

    /// [`RunFolder::dataset`]'s search; the error says where it looked.
    fn locate_dataset(&self, recorded: &Path) -> Result<PathBuf, String> {
        if recorded.is_absolute() {
            return if recorded.is_dir() {
                Ok(recorded.to_owned())
            } else {
                Err("it does not exist".into())
            };
        }
        let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
        // Where the run folder is on disk: `..` in its path would otherwise make the folders
        // "above" it wrong.
        let run = std::fs::canonicalize(&self.path).unwrap_or_else(|_| cwd.join(&self.path));
        let above_run = run.parent().unwrap_or(&run);
        std::iter::once(cwd.as_path())
            .chain(above_run.ancestors())
            .map(|base| base.join(recorded))
            .find(|candidate| candidate.is_dir())
            .ok_or_else(|| {
                let from_run = format!("{} and every folder above it", above_run.display());
                if above_run == cwd {
                    format!("a relative path, looked for in the working directory {from_run}")
                } else {
                    format!(
                        "a relative path, looked for in the working directory {} and in {from_run}",
                        cwd.display()
                    )
                }
            })
    }

    /// `config.json` as it is on disk.
    fn recorded_config(&self) -> Result<TrainConfig> {
        if !self.path.is_dir() {
            bail!("{}: no such run folder", self.path.display());
        }
        let path = self.file(CONFIG_FILE);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{}: not a run folder (no readable {CONFIG_FILE})",
                self.path.display()
            )
        })?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a trainer config", path.display()))
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.file(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{}: unreadable", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Write the file `name` atomically: `write` fills a temporary file (given its path),
    /// which is then renamed to `name`. Every file the trainer writes into a run folder goes
    /// through here.
    pub fn write_with(&self, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let path = self.file(name);
        pianoroll::atomic::write_file_with(&path, |temp| -> Result<()> {
            write(temp)?;
            change_point(&path);
            Ok(())
        })
        .with_context(|| format!("writing {}", path.display()))
    }

    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.write_with(name, |temp| Ok(std::fs::write(temp, bytes)?))
    }

    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        self.write_bytes(name, &serde_json::to_vec_pretty(value)?)
    }

    /// Write checkpoint file `name` of `epoch` under its staged name ([`staged_name`]); returns
    /// its SHA-256, for `last.json`.
    pub fn stage(
        &self,
        epoch: usize,
        name: &str,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<String> {
        let staged = staged_name(epoch, name);
        self.write_with(&staged, write)?;
        self.sha256(&staged)?
            .with_context(|| format!("{} vanished", self.file(&staged).display()))
    }

    /// Rename the staged checkpoint file `name` of `epoch` to `name`, when it is still there
    /// (when it is not, it was renamed already: staged files leave only that way).
    pub fn publish_staged(&self, epoch: usize, name: &str) -> Result<()> {
        let staged = self.file(&staged_name(epoch, name));
        if !staged.exists() {
            return Ok(());
        }
        let path = self.file(name);
        change_point(&path);
        std::fs::rename(&staged, &path)
            .with_context(|| format!("renaming {} to {}", staged.display(), path.display()))
    }

    /// SHA-256 (hex) of the file `name`; `None` when there is no such file.
    pub fn sha256(&self, name: &str) -> Result<Option<String>> {
        let path = self.file(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(pipeline::dataset::hex(&Sha256::digest(&bytes)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Remove what killed writes leave behind: the temporary files of the atomic writes
    /// (`.partial-*`) and staged checkpoint files (those of the committed epoch must have been
    /// published first). Returns the names removed.
    pub fn remove_leftovers(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.path)
            .with_context(|| format!("listing {}", self.path.display()))?;
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", self.path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file && (name.starts_with(".partial-") || is_staged(&name)) {
                let path = entry.path();
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                removed.push(name);
            }
        }
        removed.sort();
        Ok(removed)
    }

    pub fn best_epoch(&self) -> Result<Option<BestEpoch>> {
        self.read_json(BEST_EPOCH_FILE)
    }

    pub fn progress(&self) -> Result<Option<Progress>> {
        self.read_json(LAST_PROGRESS_FILE)
    }

    pub fn results(&self) -> Result<Option<Results>> {
        self.read_json(RESULTS_FILE)
    }

    /// Rows of `metrics.csv`.
    pub fn metrics(&self) -> Result<Vec<EpochRow>> {
        let path = self.file(METRICS_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        if header != EpochRow::HEADER {
            bail!("{}: unexpected header {header:?}", path.display());
        }
        lines
            .enumerate()
            .map(|(i, line)| {
                EpochRow::parse(line).map_err(|problem| {
                    anyhow::anyhow!("{} line {}: {problem}", path.display(), i + 2)
                })
            })
            .collect()
    }

    /// Start `metrics.csv` with its header (a new run).
    pub fn start_metrics(&self) -> Result<()> {
        self.write_bytes(METRICS_FILE, format!("{}\n", EpochRow::HEADER).as_bytes())
    }

    /// The header and the first `epochs` lines of `metrics.csv`.
    fn metrics_lines(&self, epochs: usize) -> Result<Vec<String>> {
        let path = self.file(METRICS_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(text.lines().take(1 + epochs).map(str::to_owned).collect())
    }

    /// Make `row` the last row of `metrics.csv`: keep the rows of the epochs before it, drop
    /// any after it (rewritten whole, so a kill never leaves half a row). The rows before it
    /// must all be there.
    pub fn publish_metrics_row(&self, row: &EpochRow) -> Result<()> {
        let mut lines = self.metrics_lines(row.epoch - 1)?;
        if lines.len() != row.epoch {
            bail!(
                "{}: {} rows, but {} says epoch {} ended; these files are not from one run",
                self.file(METRICS_FILE).display(),
                lines.len().saturating_sub(1),
                self.file(LAST_PROGRESS_FILE).display(),
                row.epoch
            );
        }
        lines.push(row.csv());
        self.write_bytes(METRICS_FILE, (lines.join("\n") + "\n").as_bytes())
    }

    /// Refuse to resume from a committed epoch whose files do not belong to it: a checkpoint
    /// file whose checksum is not the one `last` recorded (changed, or copied from another
    /// epoch or run), a `best.json` of another epoch, `metrics.csv` rows that do not end at it.
    /// The error names each file. Run folders of earlier versions record no checksums and
    /// rows; only `best.json` is checked in them.
    pub fn check_committed(&self, last: &Progress) -> Result<()> {
        let shown = |name: &str| self.file(name).display().to_string();
        let mut problems = Vec::new();
        if !last.checksums.is_empty() {
            for name in CHECKPOINT_FILES {
                let Some(recorded) = last.checksums.get(name) else {
                    problems.push(format!(
                        "{LAST_PROGRESS_FILE} records no checksum of {name}"
                    ));
                    continue;
                };
                match self.sha256(name)? {
                    Some(actual) if actual == *recorded => {}
                    Some(_) => problems.push(format!(
                        "{} is not the file epoch {} left (its SHA-256 differs)",
                        shown(name),
                        if name == BEST_WEIGHTS_FILE {
                            last.best_epoch
                        } else {
                            last.epoch
                        }
                    )),
                    None => problems.push(format!("{} is missing", shown(name))),
                }
            }
        }
        if let Some(best) = self.best_epoch()?
            && best.epoch != last.best_epoch
        {
            problems.push(format!(
                "{} names epoch {}, {LAST_PROGRESS_FILE} epoch {}",
                shown(BEST_EPOCH_FILE),
                best.epoch,
                last.best_epoch
            ));
        }
        if last.row.is_some() {
            let rows = self.metrics()?;
            if rows.len() != last.epoch || rows.last().is_some_and(|r| r.step != last.step) {
                problems.push(format!(
                    "{} does not end at epoch {}, step {}",
                    shown(METRICS_FILE),
                    last.epoch,
                    last.step
                ));
            }
        }
        if !problems.is_empty() {
            bail!(
                "{}: cannot resume: {} commits epoch {} (step {}), but {}; these files were changed \
                 or mixed with another run's: start the run again in a new folder",
                self.path.display(),
                shown(LAST_PROGRESS_FILE),
                last.epoch,
                last.step,
                problems.join("; ")
            );
        }
        Ok(())
    }

    /// Keep the header and the first `epochs` rows of `metrics.csv` (the resume of a run
    /// folder of an earlier version, whose `last.json` has no row: it drops rows that a crash
    /// left after the last checkpoint).
    pub fn truncate_metrics(&self, epochs: usize) -> Result<()> {
        let lines = self.metrics_lines(epochs)?;
        self.write_bytes(METRICS_FILE, (lines.join("\n") + "\n").as_bytes())
    }
}

/// A trained model with the config it was trained with.
pub struct Loaded {
    /// The run folder it is from.
    pub run: RunFolder,
    pub config: TrainConfig,
    pub model: Model,
    pub vs: VarStore,
    /// The weights file it was loaded from.
    pub weights: PathBuf,
}

/// Load a checkpoint: a run folder (its best weights) or a `.safetensors` file inside one.
pub fn load(checkpoint: &Path, device: Device) -> Result<Loaded> {
    let (run, weights) = if checkpoint.is_dir() {
        (
            RunFolder::new(checkpoint),
            checkpoint.join(BEST_WEIGHTS_FILE),
        )
    } else {
        if !checkpoint.exists() {
            bail!(
                "{}: no such run folder or checkpoint file",
                checkpoint.display()
            );
        }
        let folder = checkpoint.parent().unwrap_or(Path::new("."));
        (RunFolder::new(folder), checkpoint.to_owned())
    };
    let config = run.config()?;
    if !weights.is_file() {
        bail!(
            "{}: no weights yet ({} is written after the first epoch)",
            run.path().display(),
            weights.display()
        );
    }
    let mut vs = VarStore::new(device);
    let model = Model::new(&vs.root(), &config.model);
    vs.load(&weights).with_context(|| {
        format!(
            "{}: cannot load these weights into a {} model of this config",
            weights.display(),
            config.model.kind()
        )
    })?;
    Ok(Loaded {
        run,
        config,
        model,
        vs,
        weights,
    })
}

/// What a run folder says about itself: for `compare` and the curves.
pub struct RunSummary {
    pub name: String,
    pub config: TrainConfig,
    pub rows: Vec<EpochRow>,
    /// Present once the run has finished.
    pub results: Option<Results>,
}

impl RunSummary {
    pub fn read(path: &Path) -> Result<RunSummary> {
        let run = RunFolder::new(path);
        Ok(RunSummary {
            name: run.name(),
            config: run.config()?,
            rows: run.metrics()?,
            results: run.results()?,
        })
    }
}

/// The name of the run folder that `checkpoint` is (a folder) or is in (a weights file): what
/// exports and generated pieces are named after. `None` for a path with no folder name.
pub fn run_name(checkpoint: &Path) -> Option<String> {
    let run = if checkpoint.is_dir() {
        checkpoint
    } else {
        checkpoint.parent()?
    };
    let run = std::fs::canonicalize(run).unwrap_or_else(|_| run.to_owned());
    run.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stamped_checkpoint_names_are_staged_files() {
        for name in CHECKPOINT_FILES {
            assert!(is_staged(&staged_name(12, name)), "{name}");
            assert!(!is_staged(name), "{name}");
        }
        for other in [
            "epoch-.last.safetensors",
            "epoch-x.last.safetensors",
            "epoch-3.last.json",
            "epoch-3.notes.txt",
            "epoch-3",
            "my-epoch-3.last.safetensors",
        ] {
            assert!(!is_staged(other), "{other}");
        }
    }
}
