//! Reading run folders back: the learning curves of one or several runs as a PNG, and the table
//! of `trainer compare` (the original project's headline comparison, made fairly).

use std::path::Path;

use anyhow::{Context, Result};

use crate::plot::{Series, line_chart};
use crate::train::{EpochRow, Results, TrainConfig};

/// What a run folder says about itself.
pub struct RunSummary {
    pub name: String,
    pub config: TrainConfig,
    pub rows: Vec<EpochRow>,
    /// Present once the run has finished.
    pub results: Option<Results>,
}

/// Rows of a `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header != EpochRow::HEADER {
        anyhow::bail!("{}: unexpected header {header:?}", path.display());
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<f64> = line
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("{} line {}: not numbers", path.display(), i + 2))?;
            anyhow::ensure!(
                f.len() == 10,
                "{} line {}: expected 10 columns",
                path.display(),
                i + 2
            );
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
        })
        .collect()
}

pub fn read_run(run: &Path) -> Result<RunSummary> {
    let config_path = run.join("config.json");
    let config: TrainConfig = serde_json::from_slice(
        &std::fs::read(&config_path)
            .with_context(|| format!("{}: not a run folder", run.display()))?,
    )
    .with_context(|| format!("{}: not a trainer config", config_path.display()))?;
    let results = match std::fs::read(run.join("results.json")) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: unreadable results.json", run.display()))?,
        ),
        Err(_) => None,
    };
    Ok(RunSummary {
        name: run.file_name().map_or_else(
            || run.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        config,
        rows: read_metrics(&run.join("metrics.csv"))?,
        results,
    })
}

/// Train (dashed) and valid (solid) NLL per epoch of each run, one colour per run.
pub fn curves_png(runs: &[RunSummary]) -> Vec<u8> {
    let mut series = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let points =
            |f: fn(&EpochRow) -> f64| run.rows.iter().map(|r| (r.epoch as f64, f(r))).collect();
        series.push(Series {
            label: format!("{} valid", run.name),
            points: points(|r| r.valid_nll),
            dashed: false,
            colour: i,
        });
        series.push(Series {
            label: format!("{} train", run.name),
            points: points(|r| r.train_nll),
            dashed: true,
            colour: i,
        });
    }
    line_chart(
        "NLL per frame (nats), train dashed, valid solid",
        "epoch",
        "NLL",
        &series,
    )
}

/// The `trainer compare` table.
pub fn table(runs: &[RunSummary]) -> String {
    let mut out = format!(
        "{:<24} {:>5} {:>10} {:>6} {:>5} {:>11} {:>9} {:>9} {:>9}\n",
        "run",
        "model",
        "parameters",
        "epochs",
        "best",
        "valid NLL",
        "test NLL",
        "test acc",
        "baseline"
    );
    for run in runs {
        let best_valid = run
            .rows
            .iter()
            .map(|r| r.valid_nll)
            .fold(f64::INFINITY, f64::min);
        let (params, best, test_nll, test_acc, baseline) = match &run.results {
            Some(r) => (
                r.parameters.to_string(),
                r.best_epoch.to_string(),
                format!("{:.3}", r.test.nll_per_frame),
                format!("{:.3}", r.test.frame_accuracy),
                format!("{:.3}", r.test_key_rate_baseline_nll),
            ),
            None => (
                "-".into(),
                "-".into(),
                "unfinished".into(),
                "-".into(),
                "-".into(),
            ),
        };
        out += &format!(
            "{:<24} {:>5} {:>10} {:>6} {:>5} {:>11.3} {:>9} {:>9} {:>9}\n",
            run.name.chars().take(24).collect::<String>(),
            run.config.model.kind(),
            params,
            run.rows.len(),
            best,
            best_valid,
            test_nll,
            test_acc,
            baseline
        );
    }
    out
}
