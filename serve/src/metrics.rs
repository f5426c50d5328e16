//! `serve --metrics ADDR`: what an operator scrapes, as Prometheus text (format 0.0.4) on
//! `GET /metrics`:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pianoroll_requests_total` | counter | `method`, `model` (a served model's name, `(unknown)` for any other, empty for `ListModels`), `code` (the gRPC status) |
//! | `pianoroll_generated_frames_total` | counter | `model` |
//! | `pianoroll_active_generations` | gauge | |
//! | `pianoroll_batch_size` | histogram | `model`: generations advanced together per step |
//! | `pianoroll_step_seconds` | histogram | `model`: one step of the whole batch (per-frame latency) |
//! | `pianoroll_model_info` | gauge, always 1 | `model`, `kind`, `head`, `provider` |

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A Prometheus histogram: counts per upper bound (and +Inf), the sum and the count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// (counts per bucket, the last for +Inf; sum; count)
    state: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            state: Mutex::new((vec![0; bounds.len() + 1], 0.0, 0)),
        }
    }

    pub fn observe(&self, value: f64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        state.0[bucket] += 1;
        state.1 += value;
        state.2 += 1;
    }

    /// (count, sum) of every value observed.
    pub fn totals(&self) -> (u64, f64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.2, state.1)
    }

    /// The `_bucket` (cumulative), `_sum` and `_count` lines of `name` with `labels`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut cumulative = 0;
        for (i, count) in state.0.iter().enumerate() {
            cumulative += count;
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", state.1);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", state.2);
    }
}

/// Generations per step.
pub const BATCH_SIZE_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Seconds per step.
pub const STEP_SECONDS_BOUNDS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// What a batcher has done, live: the largest batch, and the duration of its recent steps (one
/// step = one frame for every generation in the batch, so a step's duration is the per-frame
/// latency its generations see, before the network).
#[derive(Debug)]
pub struct BatchStats {
    pub peak_batch: AtomicUsize,
    /// (batch size, seconds) of up to [`BatchStats::KEPT_STEPS`] most recent steps.
    steps: std::sync::Mutex<std::collections::VecDeque<(usize, f64)>>,
    /// For the operators' metrics: every step's batch size and duration, and the frames
    /// sampled.
    pub batch_sizes: Histogram,
    pub step_seconds: Histogram,
    generated_frames: AtomicU64,
}

impl Default for BatchStats {
    fn default() -> BatchStats {
        BatchStats {
            peak_batch: AtomicUsize::new(0),
            steps: Default::default(),
            batch_sizes: Histogram::new(BATCH_SIZE_BOUNDS),
            step_seconds: Histogram::new(STEP_SECONDS_BOUNDS),
            generated_frames: AtomicU64::new(0),
        }
    }
}

impl BatchStats {
    pub const KEPT_STEPS: usize = 100_000;

    /// Frames sampled so far.
    pub fn generated_frames(&self) -> u64 {
        self.generated_frames.load(Ordering::Relaxed)
    }

    pub(crate) fn add_generated_frame(&self) {
        self.generated_frames.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, batch: usize, seconds: f64) {
        self.batch_sizes.observe(batch as f64);
        self.step_seconds.observe(seconds);
        self.peak_batch.fetch_max(batch, Ordering::Relaxed);
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        if steps.len() == Self::KEPT_STEPS {
            steps.pop_front();
        }
        steps.push_back((batch, seconds));
    }

    /// The recorded steps, oldest first, and forget them.
    pub fn take_steps(&self) -> Vec<(usize, f64)> {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps.drain(..).collect()
    }
}

/// The `model` label of requests that name no served model: one series for all such names, so
/// made-up names cannot grow the metrics without bound. Parentheses keep it apart from model
/// folder names, which the registry takes as they are.
pub const UNKNOWN_MODEL: &str = "(unknown)";

/// Requests by (method, model, status code).
#[derive(Debug, Default)]
pub struct Requests(Mutex<BTreeMap<(&'static str, String, String), u64>>);

impl Requests {
    pub fn record(&self, method: &'static str, model: &str, code: tonic::Code) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *counts
            .entry((method, model.to_owned(), format!("{code:?}")))
            .or_default() += 1;
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One served model, as the exposition labels it.
pub struct ModelSeries<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub head: &'a str,
    pub provider: &'a str,
    pub stats: &'a BatchStats,
}

/// The whole exposition: the requests, `active` generations running now, and each model.
pub fn render(models: &[ModelSeries<'_>], active: usize, requests: &Requests) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP pianoroll_requests_total Requests by method, model and gRPC status code.\n\
         # TYPE pianoroll_requests_total counter\n",
    );
    for ((method, model, code), count) in
        requests.0.lock().unwrap_or_else(|p| p.into_inner()).iter()
    {
        let _ = writeln!(
            out,
            "pianoroll_requests_total{{method=\"{method}\",model=\"{}\",code=\"{code}\"}} {count}",
            escape(model)
        );
    }
    out.push_str(
        "# HELP pianoroll_generated_frames_total Frames sampled, by model.\n\
         # TYPE pianoroll_generated_frames_total counter\n",
    );
    for model in models {
        let _ = writeln!(
            out,
            "pianoroll_generated_frames_total{{model=\"{}\"}} {}",
            escape(model.name),
            model.stats.generated_frames()
        );
    }
    let _ = write!(
        out,
        "# HELP pianoroll_active_generations Generations running now, over all models.\n\
         # TYPE pianoroll_active_generations gauge\n\
         pianoroll_active_generations {active}\n"
    );
    type Pick = fn(&BatchStats) -> &Histogram;
    let histograms: [(&str, &str, Pick); 2] = [
        (
            "pianoroll_batch_size",
            "Generations advanced together by one step.",
            |stats| &stats.batch_sizes,
        ),
        (
            "pianoroll_step_seconds",
            "Duration of one step of a model's batch (per-frame latency).",
            |stats| &stats.step_seconds,
        ),
    ];
    for (name, help, pick) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for model in models {
            let labels = format!("model=\"{}\"", escape(model.name));
            pick(model.stats).render(&mut out, name, &labels);
        }
    }
    out.push_str(
        "# HELP pianoroll_model_info The models served and the execution provider of each.\n\
         # TYPE pianoroll_model_info gauge\n",
    );
    for model in models {
        let _ = writeln!(
            out,
            "pianoroll_model_info{{model=\"{}\",kind=\"{}\",head=\"{}\",provider=\"{}\"}} 1",
            escape(model.name),
            escape(model.kind),
            escape(model.head),
            model.provider
        );
    }
    out
}
