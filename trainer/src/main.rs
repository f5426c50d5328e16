//! `trainer`: the command-line shell over the trainer library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use trainer::config::{Preset, Recipe, TrainConfig};
use trainer::model::ModelKind;
use trainer::rwkv::WkvMode;
use trainer::train::{RunOptions, resume, train};

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
        #[arg(short, long, required_unless_present = "triton")]
        output: Option<PathBuf>,
        /// Also (or instead) write the model into this Triton model repository, as
        /// DIR/NAME/config.pbtxt and DIR/NAME/1/model.onnx (sequence batcher, implicit state).
        #[arg(long, value_name = "DIR")]
        triton: Option<PathBuf>,
        /// The model's name in the Triton repository (default: the run folder's name).
        #[arg(long, requires = "triton")]
        name: Option<String>,
        /// Replace an existing model folder.
        #[arg(long)]
        force: bool,
    },
    /// Score a trained model on one split of a dataset: NLL per frame, BCE per pitch, frame
    /// accuracy, next to the constant key-rate baseline; with --music, also the music
    /// statistics of pieces it samples against the split's.
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
    temperature: f32,
    /// MIDI file whose frames (on the run's grid) start the piece; the piece is written in its
    /// key, meter and tempo.
    #[arg(long)]
    primer: Option<PathBuf>,
    /// The key the piece is written in: D, "F# minor", Bbm (without a mode, the primer's;
    /// default: the primer's key, else C major). The model works in the key it was trained in.
    #[arg(long)]
    key: Option<pianoroll::key::KeyName>,
    /// Its time signature, e.g. 6/8 (default: the primer's, else 4/4); the PNG's bar lines
    /// follow it.
    #[arg(long)]
    meter: Option<pianoroll::meter::Meter>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(short, long)]
    output: PathBuf,
    /// Also draw the piano roll.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Also play it: WAV, 44.1 kHz, 16-bit stereo.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// General MIDI SoundFont (.sf2) for --wav (default: the system's, as Debian's
    /// timgm6mb-soundfont installs it; else a built-in synthesiser).
    #[arg(long)]
    soundfont: Option<PathBuf>,
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
    /// How RWKV computes WKV (see `train --wkv-chunk`).
    #[arg(long, default_value_t = 0)]
    wkv_chunk: i64,
    /// Also sample pieces (seeds 0.., temperature 1, no primer) and print their music
    /// statistics (polyphony, silent share, triad share, onsets per frame) beside the split's,
    /// and the distance between their pitch-class sets.
    #[arg(long)]
    music: bool,
    /// How many pieces --music samples.
    #[arg(long, default_value_t = 12, requires = "music",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    music_pieces: u32,
    /// How many frames each --music piece has.
    #[arg(long, default_value_t = 256, requires = "music",
          value_parser = clap::value_parser!(u32).range(1..=MAX_SAMPLE_STEPS as i64))]
    music_frames: u32,
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

/// `--recipe auto`: a recipe chosen from the corpus ([`trainer::auto`]), not a file.
const AUTO_RECIPE: &str = "auto";

/// Longest generation accepted in one call.
const MAX_SAMPLE_STEPS: usize = 100_000;

#[derive(Args)]
// `--model` is a recipe setting, required only where no recipe or run names the model.
#[command(mut_arg("model", |model| model.required_unless_present_any(["resume", "recipe"])))]
struct TrainArgs {
    /// A recipe file (recipes/*.toml): the model and its training settings. Flags override it;
    /// settings it leaves out come from the `fair` preset. `auto` chooses one from the training
    /// split's size (for --model, LSTM when not given), from the family's best recipe.
    #[arg(long, conflicts_with = "preset")]
    recipe: Option<PathBuf>,
    /// Dataset folder (from `pipeline build`).
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// Run folder to create.
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue this run folder from its last finished epoch, or from the start when none
    /// finished (its config.json decides everything else).
    #[arg(long, conflicts_with_all = ["model", "data", "out", "recipe", "preset"])]
    resume: Option<PathBuf>,
    /// Stop after this epoch, as if interrupted; continue later with --resume.
    #[arg(long)]
    stop_after_epoch: Option<usize>,
    /// A built-in recipe (recipes/{seed,fair}-MODEL.toml); `fair` when no --recipe is given.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// How RWKV's parallel form computes WKV, a speed choice that is not saved with the run:
    /// 0 (the default) one scan over the whole sequence, L > 0 chunks of L steps.
    #[arg(long, default_value_t = 0)]
    wkv_chunk: i64,
    /// Every recipe setting as a flag, overriding the recipe's.
    #[command(flatten, next_help_heading = "Recipe settings (override the recipe's)")]
    settings: Recipe,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig> {
        let data = self
            .data
            .as_ref()
            .context("--data is required for a new run")?;
        let manifest = pipeline::dataset::Manifest::read(data)
            .with_context(|| format!("--data {}: not a dataset folder", data.display()))?;
        let roll_settings = manifest.settings;
        if self.recipe.as_deref() == Some(Path::new(AUTO_RECIPE)) {
            let train = manifest
                .splits
                .get(&pipeline::dataset::Split::Train)
                .with_context(|| format!("--data {}: no training split", data.display()))?;
            let corpus = trainer::auto::Corpus {
                pieces: train.pieces,
                frames: train.frames,
            };
            let kind = self.settings.model.unwrap_or(ModelKind::Lstm);
            let (recipe, record) = trainer::auto::recipe(kind, &corpus)?;
            tracing::info!("--recipe auto chose:\n{}", record.toml);
            return trainer::config::from_parsed_recipe_and_flags(
                recipe,
                record,
                "--recipe auto",
                &self.settings,
                data,
                roll_settings,
            )
            .map_err(Into::into);
        }
        trainer::config::from_recipe_and_flags(
            self.recipe.as_deref(),
            self.preset,
            &self.settings,
            data,
            roll_settings,
        )
        .map_err(Into::into)
    }
}

fn main() -> std::process::ExitCode {
    // `trainer::device::parse` loads the CUDA backend when a command needs a device, so
    // `export` and `compare` start without it.
    pianoroll::binary::end_quietly_on_closed_stdout();
    pianoroll::binary::init_logging("info");
    pianoroll::binary::exit_code(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let options = RunOptions {
                device: trainer::device::parse(&args.device)?,
                progress: std::io::stderr().is_terminal(),
                stop_after_epoch: args.stop_after_epoch,
                wkv: wkv_mode(args.wkv_chunk)?,
            };
            let (run, results) = match &args.resume {
                Some(run) => (run.clone(), resume(run, options)?),
                None => {
                    let run = args
                        .out
                        .clone()
                        .context("--out is required for a new run")?;
                    let results = train(&args.config()?, &run, options)?;
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
            triton,
            name,
            force,
        } => {
            let said = |card: &proto::card::ModelCard, place: &std::path::Path| {
                println!(
                    "exported {} model ({} parameters, {} state tensors) to {}",
                    card.kind,
                    card.metrics.parameters,
                    card.states.len(),
                    place.display()
                );
            };
            if let Some(output) = &output {
                said(
                    &trainer::export::export(&checkpoint, output, force)?,
                    output,
                );
            }
            if let Some(repository) = &triton {
                let name = match name {
                    Some(name) => name,
                    None => trainer::run::run_name(&checkpoint).ok_or_else(|| {
                        anyhow::anyhow!("{}: give the model a --name", checkpoint.display())
                    })?,
                };
                let card = trainer::export::export_triton(&checkpoint, repository, &name, force)?;
                said(&card, &repository.join(&name));
            }
            Ok(())
        }
        Command::Compare { runs, output } => {
            let summaries = runs
                .iter()
                .map(|run| trainer::run::RunSummary::read(run))
                .collect::<Result<Vec<_>>>()?;
            print!("{}", trainer::compare::table(&summaries));
            write_file(&output, &trainer::compare::curves_png(&summaries))?;
            println!("curves: {}", output.display());
            Ok(())
        }
    }
}

fn wkv_mode(chunk: i64) -> Result<WkvMode> {
    WkvMode::from_chunk(chunk)
        .with_context(|| format!("--wkv-chunk must be 0 (one scan) or a chunk length, got {chunk}"))
}

fn eval(args: EvalArgs) -> Result<()> {
    let music = args.music.then_some(trainer::evaluate::MusicOptions {
        pieces: args.music_pieces as usize,
        frames: args.music_frames as usize,
    });
    let report = trainer::evaluate::evaluate_checkpoint_with_music(
        &args.checkpoint,
        args.split.into(),
        args.data.as_deref(),
        trainer::device::parse(&args.device)?,
        wkv_mode(args.wkv_chunk)?,
        music,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

fn sample(args: SampleArgs) -> Result<()> {
    if args.steps == 0 || args.steps > MAX_SAMPLE_STEPS {
        bail!("--steps must be 1..={MAX_SAMPLE_STEPS}, got {}", args.steps);
    }
    let device = trainer::device::parse(&args.device)?;
    let synth = match &args.wav {
        Some(_) => Some(pianoroll::audio::Synth::load(args.soundfont.as_deref())?),
        None => None,
    };
    let loaded = trainer::run::load(&args.checkpoint, device)?;
    let settings = loaded.config.roll_settings;
    let primer = trainer::sample::Primer::read(
        args.primer.as_deref(),
        &settings,
        &pianoroll::setting::Asked {
            key: args.key,
            meter: args.meter,
            tempo_bpm: None,
        },
    )?;
    let roll = trainer::sample::generate(
        &loaded.model,
        loaded.config.silent_start,
        &primer.frames,
        args.steps,
        args.temperature,
        args.seed,
        device,
    )?;
    write_file(
        &args.output,
        &trainer::sample::sample_midi(&loaded, &primer, &roll),
    )?;
    let setting = primer.trip.setting;
    println!(
        "wrote {} ({} frames, {} from the primer; {}, {})",
        args.output.display(),
        roll.len(),
        primer.frames.len(),
        setting.key,
        setting.meter
    );
    let roll = primer.written(&roll);
    if let Some(png) = &args.png {
        write_file(
            png,
            &pianoroll::render::render_png(
                &roll,
                &pianoroll::render::PngOptions {
                    primer_frames: primer.frames.len(),
                    bars: Some(primer.trip.bars(settings.grid)),
                    ..Default::default()
                },
            ),
        )?;
        println!("wrote {}", png.display());
    }
    if let (Some(path), Some(synth)) = (&args.wav, &synth) {
        let wav = pianoroll::audio::render_wav(&roll, settings.grid, setting.tempo_bpm, synth);
        write_file(path, &wav)?;
        println!("wrote {} ({})", path.display(), synth.describe());
    }
    Ok(())
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    pianoroll::atomic::write_file(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}
