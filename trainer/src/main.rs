//! `trainer`: the command-line shell over the trainer library.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use trainer::lstm::LstmConfig;
use trainer::model::ModelConfig;
use trainer::rwkv::RwkvConfig;
use trainer::train::{Schedule, TrainConfig, resume, train};

#[derive(Parser)]
#[command(
    version,
    about = "Train LSTM and RWKV next-frame models on piano-roll datasets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on a dataset made by `pipeline build`, into a new run folder.
    Train(Box<TrainArgs>),
    /// Generate music with a trained model (its recurrent form) and write MIDI (and a PNG).
    Sample(SampleArgs),
    /// Write a run's weights as a model folder for the server: model.onnx (one recurrent step)
    /// and model.json.
    Export {
        /// A run folder (uses best.safetensors) or a .safetensors file in one.
        checkpoint: PathBuf,
        /// Model folder to create, e.g. models/lstm.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace an existing model folder.
        #[arg(long)]
        force: bool,
    },
    /// Score a trained model on one split of a dataset: NLL per frame, BCE per pitch, frame
    /// accuracy, next to the constant key-rate baseline.
    Eval(EvalArgs),
    /// Table of several runs and their learning curves in one PNG.
    Compare {
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where to draw the curves.
        #[arg(short, long, default_value = "compare.png")]
        output: PathBuf,
    },
}

#[derive(Args)]
struct SampleArgs {
    /// A run folder (uses best.safetensors) or a .safetensors file in one.
    checkpoint: PathBuf,
    /// Frames to generate after the primer.
    #[arg(long, default_value_t = 128)]
    steps: usize,
    /// Sampling temperature: logits are divided by it before the sigmoid.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// MIDI file whose frames (on the run's grid) start the piece.
    #[arg(long)]
    primer: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(short, long)]
    output: PathBuf,
    /// Also draw the piano roll.
    #[arg(long)]
    png: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    device: String,
}

#[derive(Args)]
struct EvalArgs {
    /// A run folder (uses best.safetensors) or a .safetensors file in one.
    checkpoint: PathBuf,
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    /// Dataset folder; by default the one the run trained on (as its config.json names it). It
    /// must be on the run's grid.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print the scores as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Valid,
    Test,
}

impl From<SplitArg> for pipeline::dataset::Split {
    fn from(split: SplitArg) -> Self {
        match split {
            SplitArg::Train => Self::Train,
            SplitArg::Valid => Self::Valid,
            SplitArg::Test => Self::Test,
        }
    }
}

/// Longest generation accepted in one call.
const MAX_SAMPLE_STEPS: usize = 100_000;

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Lstm,
    Rwkv,
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// The original project's configurations: LSTM 512×2, RWKV 6×512, 10 epochs, triangular
    /// learning-rate cycle.
    Seed,
    /// Equal parameter budgets (about 4.3 M: LSTM 512×2, RWKV 6×232) and the same AdamW,
    /// warmup + cosine schedule for both.
    Fair,
}

#[derive(Args)]
struct TrainArgs {
    #[arg(long, value_enum, required_unless_present = "resume")]
    model: Option<Kind>,
    /// Dataset folder (from `pipeline build`).
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// Run folder to create.
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue this run folder from its last checkpoint (its config.json decides everything
    /// else).
    #[arg(long, conflicts_with_all = ["model", "data", "out"])]
    resume: Option<PathBuf>,
    /// Stop after this epoch, as if interrupted; continue later with --resume.
    #[arg(long)]
    stop_after_epoch: Option<usize>,
    #[arg(long, value_enum, default_value = "fair")]
    preset: Preset,
    #[arg(long)]
    epochs: Option<usize>,
    /// Stop after this many optimiser steps (smoke tests, CI).
    #[arg(long)]
    max_steps: Option<u64>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// LSTM hidden width.
    #[arg(long)]
    hidden: Option<i64>,
    /// LSTM or RWKV layers.
    #[arg(long)]
    layers: Option<i64>,
    /// RWKV embedding width.
    #[arg(long)]
    embd: Option<i64>,
    /// RWKV channel-mix hidden width as a multiple of the embedding width (4 in RWKV-4).
    #[arg(long)]
    ffn_mult: Option<i64>,
    /// Dropout on the embedded input frame: LSTM after the input BatchNorm, RWKV after ln0.
    #[arg(long)]
    dropout_in: Option<f64>,
    /// LSTM dropout after the output BatchNorm.
    #[arg(long)]
    dropout_out: Option<f64>,
    /// LSTM dropout between stacked layers (not in the original model).
    #[arg(long)]
    dropout_between: Option<f64>,
    /// LSTM without its two BatchNorms. Their training statistics include future frames, which
    /// a model trained on small batches (e.g. --batch-size 1) learns to exploit.
    #[arg(long)]
    no_batch_norm: bool,
    /// RWKV dropout on each block's time-mix and channel-mix outputs.
    #[arg(long)]
    dropout: Option<f64>,
    /// RWKV WKV chunk length in the parallel form; 0 (the default) computes the whole sequence
    /// as one scan.
    #[arg(long)]
    wkv_chunk: Option<i64>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Truncated backpropagation through time: window length in frames.
    #[arg(long)]
    seq_len: Option<i64>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Clip the global gradient norm to this.
    #[arg(long)]
    clip_norm: Option<f64>,
    /// Stop early once this many epochs pass without a better valid NLL.
    #[arg(long)]
    patience: Option<usize>,
    /// Transposition augmentation: each epoch, move every training piece by a random whole
    /// number of semitones in -K..=K (at most 12). Valid and test are never moved.
    #[arg(long, value_name = "K", default_value_t = 0)]
    transpose_augment: u8,
    /// Weight averaging: score valid and test with an exponential moving average of the
    /// weights, updated every optimiser step with this decay (e.g. 0.995).
    #[arg(long, value_name = "DECAY")]
    ema_decay: Option<f64>,
    /// Note dropout (both models): in training, silence each sounding key of each input frame
    /// with this probability; the targets stay whole.
    #[arg(long, value_name = "P")]
    note_dropout: Option<f64>,
}

fn config(args: &TrainArgs) -> Result<TrainConfig> {
    let (Some(kind), Some(data)) = (args.model, &args.data) else {
        bail!("--model and --data are required for a new run");
    };
    let roll_settings = pipeline::dataset::Manifest::read(data)
        .with_context(|| format!("--data {}: not a dataset folder", data.display()))?
        .settings;
    let model = match (kind, args.preset) {
        (Kind::Lstm, _) => {
            let base = LstmConfig::original();
            ModelConfig::Lstm(LstmConfig {
                hidden: args.hidden.unwrap_or(base.hidden),
                layers: args.layers.unwrap_or(base.layers),
                dropout_in: args.dropout_in.unwrap_or(base.dropout_in),
                dropout_out: args.dropout_out.unwrap_or(base.dropout_out),
                dropout_between: args.dropout_between.unwrap_or(base.dropout_between),
                batch_norm: !args.no_batch_norm,
            })
        }
        (Kind::Rwkv, preset) => {
            let base = RwkvConfig::original();
            let embd = match preset {
                Preset::Seed => base.embd,
                Preset::Fair => 232, // 6 × 232 ≈ 4.3 M parameters, the LSTM's budget
            };
            ModelConfig::Rwkv(RwkvConfig {
                layers: args.layers.unwrap_or(base.layers),
                embd: args.embd.unwrap_or(embd),
                ffn_mult: args.ffn_mult.unwrap_or(base.ffn_mult),
                wkv_chunk: args.wkv_chunk.unwrap_or(base.wkv_chunk),
                dropout: args.dropout.unwrap_or(base.dropout),
                dropout_in: args.dropout_in.unwrap_or(base.dropout_in),
            })
        }
    };
    let (schedule, weight_decay, warmup) = match args.preset {
        Preset::Seed => (Schedule::Triangular, 0.0, 0),
        Preset::Fair => (Schedule::Cosine, 0.01, 200),
    };
    let config = TrainConfig {
        model,
        dataset: data.clone(),
        roll_settings,
        epochs: args.epochs.unwrap_or(10),
        max_steps: args.max_steps,
        batch_size: args.batch_size.unwrap_or(8),
        seq_len: args.seq_len,
        lr: args.lr.unwrap_or(1e-3),
        weight_decay: args.weight_decay.unwrap_or(weight_decay),
        beta1: 0.9,
        beta2: 0.999,
        schedule: args.schedule.unwrap_or(schedule),
        warmup_steps: args.warmup_steps.unwrap_or(warmup),
        clip_norm: args.clip_norm.unwrap_or(1.0),
        seed: args.seed,
        patience: args.patience,
        transpose_augment: args.transpose_augment,
        ema_decay: args.ema_decay,
        note_dropout: args.note_dropout.unwrap_or(0.0),
    };
    let sizes = match &config.model {
        ModelConfig::Lstm(lstm) => vec![("--hidden", lstm.hidden), ("--layers", lstm.layers)],
        ModelConfig::Rwkv(rwkv) => vec![
            ("--embd", rwkv.embd),
            ("--layers", rwkv.layers),
            ("--ffn-mult", rwkv.ffn_mult),
        ],
    };
    for (flag, size) in sizes {
        if size < 1 {
            bail!("{flag} must be at least 1, got {size}");
        }
    }
    let positive = [
        ("--epochs", config.epochs as f64),
        ("--batch-size", config.batch_size as f64),
        ("--lr", config.lr),
        ("--clip-norm", config.clip_norm),
    ];
    for (flag, value) in positive {
        if !(value.is_finite() && value > 0.0) {
            bail!("{flag} must be positive, got {value}");
        }
    }
    if config.transpose_augment > 12 {
        bail!(
            "--transpose-augment must be at most 12 semitones (an octave), got {}",
            config.transpose_augment
        );
    }
    if let ModelConfig::Rwkv(rwkv) = &config.model
        && rwkv.wkv_chunk < 0
    {
        bail!(
            "--wkv-chunk must be 0 (one scan) or a chunk length, got {}",
            rwkv.wkv_chunk
        );
    }
    if config.patience == Some(0) {
        bail!("--patience must be at least 1 epoch");
    }
    let probabilities = [
        ("--dropout-in", args.dropout_in),
        ("--dropout-out", args.dropout_out),
        ("--dropout-between", args.dropout_between),
        ("--dropout", args.dropout),
        ("--ema-decay", args.ema_decay),
        ("--note-dropout", args.note_dropout),
    ];
    for (flag, value) in probabilities {
        if let Some(p) = value
            && !(0.0..1.0).contains(&p)
        {
            bail!("{flag} must be in [0, 1), got {p}");
        }
    }
    Ok(config)
}

fn main() -> std::process::ExitCode {
    // `trainer::device::parse` loads the CUDA backend when a command needs a device, so
    // `export` and `compare` start without it.
    pipeline::binary::init_logging("info");
    pipeline::binary::exit_code(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let device = trainer::device::parse(&args.device)?;
            let progress = std::io::stderr().is_terminal();
            let (run, results) = match &args.resume {
                Some(run) => (
                    run.clone(),
                    resume(run, device, progress, args.stop_after_epoch)?,
                ),
                None => {
                    let run = args
                        .out
                        .clone()
                        .context("--out is required for a new run")?;
                    let config = config(&args)?;
                    let results = train(&config, &run, device, progress, args.stop_after_epoch)?;
                    (run, results)
                }
            };
            let Some(results) = results else {
                println!(
                    "{}: stopped early; continue with --resume {}",
                    run.display(),
                    run.display()
                );
                return Ok(());
            };
            println!(
                "{}: {} ({} parameters), best epoch {}: test NLL {:.3} nats/frame, accuracy {:.3} (constant key-rate baseline {:.3})",
                run.display(),
                results.model,
                results.parameters,
                results.best_epoch,
                results.test.nll_per_frame,
                results.test.frame_accuracy,
                results.test_key_rate_baseline_nll
            );
            Ok(())
        }
        Command::Sample(args) => sample(args),
        Command::Eval(args) => eval(args),
        Command::Export {
            checkpoint,
            output,
            force,
        } => {
            let card = trainer::export::export(&checkpoint, &output, force)?;
            println!(
                "exported {} model ({} parameters, {} state tensors) to {}",
                card.kind,
                card.metrics.parameters,
                card.states.len(),
                output.display()
            );
            Ok(())
        }
        Command::Compare { runs, output } => {
            let summaries = runs
                .iter()
                .map(|run| trainer::compare::read_run(run))
                .collect::<Result<Vec<_>>>()?;
            print!("{}", trainer::compare::table(&summaries));
            pipeline::render::write_atomic(&output, &trainer::compare::curves_png(&summaries))
                .with_context(|| format!("writing {}", output.display()))?;
            println!("curves: {}", output.display());
            Ok(())
        }
    }
}

fn eval(args: EvalArgs) -> Result<()> {
    use trainer::data::SplitData;
    let device = trainer::device::parse(&args.device)?;
    let loaded = trainer::sample::load(&args.checkpoint, device)?;
    let config = &loaded.config;
    let dataset = args.data.as_ref().unwrap_or(&config.dataset);
    let split = pipeline::dataset::Split::from(args.split);
    let load = |split| {
        SplitData::load(dataset, split, Some(&config.roll_settings)).with_context(|| {
            match &args.data {
                Some(data) => format!("--data {}", data.display()),
                None => format!(
                    "the run's dataset {} (from its config.json; --data names another)",
                    dataset.display()
                ),
            }
        })
    };
    let data = load(split)?;
    let train_rolls = load(pipeline::dataset::Split::Train)?.rolls;
    let scores = trainer::train::evaluate(&loaded.model, &data, config.batch_size, device);
    let baseline = trainer::metrics::key_rate_baseline(&train_rolls, &data.rolls);
    if args.json {
        let report = serde_json::json!({
            "checkpoint": args.checkpoint,
            "dataset": dataset,
            "split": split.as_str(),
            "scores": scores,
            "key_rate_baseline_nll": baseline,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} on {} {}: NLL {:.3} nats/frame, BCE {:.4} per key, frame accuracy {:.3} over {} predicted frames (constant key-rate baseline {:.3})",
            args.checkpoint.display(),
            dataset.display(),
            split.as_str(),
            scores.nll_per_frame,
            scores.bce_per_pitch,
            scores.frame_accuracy,
            scores.frames,
            baseline
        );
    }
    Ok(())
}

fn sample(args: SampleArgs) -> Result<()> {
    if args.steps == 0 || args.steps > MAX_SAMPLE_STEPS {
        bail!("--steps must be 1..={MAX_SAMPLE_STEPS}, got {}", args.steps);
    }
    let device = trainer::device::parse(&args.device)?;
    let loaded = trainer::sample::load(&args.checkpoint, device)?;
    let settings = loaded.config.roll_settings;
    let primer = match &args.primer {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            pipeline::read_midi(&bytes, &settings)
                .with_context(|| format!("--primer {}", path.display()))?
                .roll
                .frames()
                .to_vec()
        }
        None => Vec::new(),
    };
    let roll = trainer::sample::generate(
        &loaded.model,
        &primer,
        args.steps,
        args.temperature,
        args.seed,
        device,
    )?;
    let midi = pipeline::write_midi(&roll, settings.grid, &Default::default());
    pipeline::render::write_atomic(&args.output, &midi)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {} ({} frames, {} from the primer)",
        args.output.display(),
        roll.len(),
        primer.len()
    );
    if let Some(png) = &args.png {
        let picture = pipeline::render::render_png(&roll, &Default::default());
        pipeline::render::write_atomic(png, &picture)
            .with_context(|| format!("writing {}", png.display()))?;
        println!("wrote {}", png.display());
    }
    Ok(())
}
