//! Runs side by side: the learning curves of one or several runs as a PNG, and the table of
//! `trainer compare` (the original project's headline comparison, made fairly). The runs are
//! read with [`RunSummary::read`].

use crate::plot::{Series, line_chart};
use crate::run::{EpochRow, RunSummary};

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
