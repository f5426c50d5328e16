//! The run folder: the one owner of its files, their names and formats.
//!
//! ```text
//! RUN/config.json              TrainConfig: everything that decides what the run computes
//!     metrics.csv              one EpochRow per finished epoch
//!     last.safetensors         weights after the last finished epoch
//!     last.optim.safetensors   the optimiser's moments and step (and the weight average)
//!     last.json                Progress: where to resume
//!     best.safetensors         the weights valid was scored with at the best epoch
//!     best.json                BestEpoch: which epoch that was
//!     curves.png               train and valid NLL per epoch, redrawn every epoch
//!     results.json             Results: valid and test scores of the best weights, at the end
//! ```
//! Every file is written to a temporary name and renamed ([`pipeline::atomic`]), so a crash
//! never leaves a torn checkpoint; the checkpoint is written before the metrics row that
//! claims it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
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

/// `last.json`: where a run stands after an epoch, written with each checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub epoch: usize,
    pub step: u64,
    /// Shuffling generator state at the end of the epoch.
    pub rng: u64,
    pub best_epoch: usize,
    pub best_valid_nll: f64,
    /// True when `max_steps` ended training in this epoch.
    pub max_steps_reached: bool,
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

    /// Create a new run folder holding `config` (it must not exist yet).
    pub fn create(path: &Path, config: &TrainConfig) -> Result<RunFolder> {
        RunFolder::check_new(path)?;
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let run = RunFolder::new(path);
        run.write_json(CONFIG_FILE, config)?;
        Ok(run)
    }

    /// The run's configuration; an error says when the folder is not a run at all.
    pub fn config(&self) -> Result<TrainConfig> {
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

    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        let path = self.file(name);
        let bytes = serde_json::to_vec_pretty(value)?;
        pipeline::atomic::write_file(&path, &bytes)
            .with_context(|| format!("writing {}", path.display()))
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
        let path = self.file(METRICS_FILE);
        pipeline::atomic::write_file(&path, format!("{}\n", EpochRow::HEADER).as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Keep the header and the first `epochs` rows of `metrics.csv` (a resume drops rows that
    /// a crash left after the last checkpoint).
    pub fn truncate_metrics(&self, epochs: usize) -> Result<()> {
        let path = self.file(METRICS_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let kept: Vec<&str> = text.lines().take(1 + epochs).collect();
        pipeline::atomic::write_file(&path, (kept.join("\n") + "\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn append_metrics(&self, row: &EpochRow) -> Result<()> {
        let path = self.file(METRICS_FILE);
        let mut csv = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(csv, "{}", row.csv())?;
        csv.sync_data()?;
        Ok(())
    }

    /// Save the variables of `vs` as the weights file `name`.
    pub fn save_weights(&self, vs: &VarStore, name: &str) -> Result<()> {
        let path = self.file(name);
        pipeline::atomic::write_file_with(&path, |temp| -> Result<()> {
            vs.save(temp)?;
            Ok(())
        })
        .with_context(|| format!("writing {}", path.display()))
    }
}

/// A trained model with the config it was trained with.
pub struct Loaded {
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
