//! `pipeline`: the command-line shell over the `pipeline` library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pianoroll::atomic::write_file;
use pianoroll::meter::Meter;
use pianoroll::midi::MidiWriteOptions;
use pianoroll::render::{PngOptions, render_png};
use pianoroll::{Grid, RollSettings, Transpose};
use pipeline::dataset::{self, BuildOptions, SplitFractions};

#[derive(Parser)]
#[command(version, about = "MIDI collections to piano-roll datasets (Arrow IPC)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a folder of MIDI files into a dataset folder (train/valid/test .arrow + manifest.json).
    Build(BuildArgs),
    /// Per-split statistics of a dataset and the constant-rate baseline NLL; with --music, the
    /// music statistics of a folder of MIDI files against a split of the dataset.
    Stats {
        dataset: PathBuf,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// A folder of MIDI files (e.g. generated pieces), read on DATASET's grid: print their
        /// polyphony, silent share, triad share, onsets per frame and the distance of their
        /// pitch-class sets from those of DATASET's --split.
        #[arg(long, value_name = "FOLDER")]
        music: Option<PathBuf>,
        /// The split --music measures against.
        #[arg(long, value_enum, default_value = "test", requires = "music")]
        split: SplitArg,
        /// Read the --music files as written, without DATASET's transposition to C (for pieces
        /// in the model's key that carry no key signature).
        #[arg(long, requires = "music")]
        as_written: bool,
    },
    /// Write one piece (from a dataset, or a MIDI file through the grid) as MIDI and/or PNG.
    Render(RenderArgs),
    /// Import published piano rolls (a MAT-file with cell arrays traindata, validdata, testdata
    /// of T x 88 matrices, e.g. data/nottingham-bl2012/Nottingham.mat) as a dataset folder.
    ImportMat {
        /// The MAT-file.
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Replace an existing dataset folder.
        #[arg(long)]
        force: bool,
        /// The most one compressed element may inflate to, in MB (a guard against files that
        /// unpack to gigabytes; the published rolls' largest is 15.6 MB).
        #[arg(long, default_value_t = (pipeline::matfile::DEFAULT_MAX_ELEMENT_BYTES / 1_000_000) as u32,
              value_parser = clap::value_parser!(u32).range(1..))]
        max_element_mb: u32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// Eighth-note frames following the beat, transposed to C major / C minor.
    Benchmark,
    /// Fixed 0.3 s frames, no transposition (the original student project).
    Seed,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Valid,
    Test,
}

impl From<SplitArg> for dataset::Split {
    fn from(split: SplitArg) -> Self {
        match split {
            SplitArg::Train => Self::Train,
            SplitArg::Valid => Self::Valid,
            SplitArg::Test => Self::Test,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TransposeArg {
    /// To C major / C minor by the smallest interval.
    C,
    None,
}

/// Grid flags, shared by `build` and `render`; each overrides its part of the preset.
#[derive(Args)]
struct GridArgs {
    #[arg(long, value_enum, default_value = "benchmark")]
    preset: Preset,
    /// Frames per quarter note, following the file's beat (1..=64).
    #[arg(long, conflicts_with = "seconds")]
    frames_per_beat: Option<u32>,
    /// Fixed frame length in seconds (0.001..=60).
    #[arg(long)]
    seconds: Option<f64>,
    #[arg(long, value_enum)]
    transpose: Option<TransposeArg>,
    /// Refuse pieces longer than this many frames.
    #[arg(long, default_value_t = RollSettings::DEFAULT_MAX_FRAMES)]
    max_frames: usize,
}

impl GridArgs {
    fn settings(&self) -> Result<RollSettings> {
        let mut settings = match self.preset {
            Preset::Benchmark => RollSettings::benchmark(),
            Preset::Seed => RollSettings::seed(),
        };
        if let Some(n) = self.frames_per_beat {
            settings.grid = Grid::beats(n).with_context(|| {
                format!(
                    "--frames-per-beat {n}: must be 1..={}",
                    Grid::MAX_FRAMES_PER_BEAT
                )
            })?;
        }
        if let Some(s) = self.seconds {
            settings.grid = Grid::seconds(s)
                .with_context(|| format!("--seconds {s}: must be between 0.001 and 60"))?;
        }
        if let Some(t) = self.transpose {
            settings.transpose = match t {
                TransposeArg::C => Transpose::ToC,
                TransposeArg::None => Transpose::None,
            };
        }
        if self.max_frames == 0 {
            bail!("--max-frames must be at least 1");
        }
        settings.max_frames = self.max_frames;
        Ok(settings)
    }
}

#[derive(Args)]
struct BuildArgs {
    /// Folder of .mid/.midi files; train/ valid/ test/ subfolders are used as the splits.
    input: PathBuf,
    /// Dataset folder to create.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    grid: GridArgs,
    /// Train,valid,test fractions of the hash split, used when the input has no split folders.
    #[arg(long, default_value = "0.8,0.1,0.1")]
    split: SplitFractions,
    /// Replace an existing dataset.
    #[arg(long)]
    force: bool,
    /// Stop at the first unreadable file instead of recording it and going on.
    #[arg(long)]
    strict: bool,
    /// Larger MIDI files are recorded as errors, not read (MB; the largest Nottingham file is
    /// 12 KB, a long piano performance a few hundred KB).
    #[arg(long, default_value_t = (dataset::DEFAULT_MAX_FILE_BYTES / 1_000_000) as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_file_mb: u32,
}

#[derive(Args)]
struct RenderArgs {
    /// A dataset folder (with --piece) or a MIDI file.
    input: PathBuf,
    /// Id of the piece to render, when INPUT is a dataset.
    #[arg(long)]
    piece: Option<String>,
    /// MIDI file to write.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// PNG piano-roll picture to write.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Audio to write: WAV, 44.1 kHz, 16-bit stereo.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// General MIDI SoundFont (.sf2) for --wav (default: the system's, as Debian's
    /// timgm6mb-soundfont installs it; else a built-in synthesiser).
    #[arg(long)]
    soundfont: Option<PathBuf>,
    /// Tempo of the written MIDI and audio on a beat grid, in quarter notes per minute.
    #[arg(long)]
    tempo: Option<f64>,
    /// Grid for a MIDI input (a dataset brings its own).
    #[command(flatten)]
    grid: GridArgs,
}

fn main() -> std::process::ExitCode {
    pianoroll::binary::end_quietly_on_closed_stdout();
    pianoroll::binary::init_logging("info");
    pianoroll::binary::exit_code(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => build(args),
        Command::Stats {
            dataset,
            json,
            music: Some(folder),
            split,
            as_written,
        } => {
            let report = pipeline::stats::music_stats(&folder, &dataset, split.into(), as_written)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
        Command::Stats { dataset, json, .. } => {
            let stats = pipeline::stats::dataset_stats(&dataset)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", stats.table());
            }
            Ok(())
        }
        Command::Render(args) => render(args),
        Command::ImportMat {
            input,
            output,
            force,
            max_element_mb,
        } => {
            let max_element_bytes = max_element_mb as usize * 1_000_000;
            let manifest = pipeline::published::import(&input, &output, force, max_element_bytes)?;
            let counts: Vec<String> = manifest
                .splits
                .iter()
                .map(|(split, s)| {
                    format!(
                        "{} {} pieces, {} frames",
                        split.as_str(),
                        s.pieces,
                        s.frames
                    )
                })
                .collect();
            println!("{}: {}", output.display(), counts.join("; "));
            Ok(())
        }
    }
}

fn build(args: BuildArgs) -> Result<()> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130); // a second Ctrl-C: give up at once
        }
        eprintln!("interrupted: stopping, nothing will be written");
    })
    .context("installing the Ctrl-C handler")?;
    let options = BuildOptions {
        settings: args.grid.settings()?,
        fractions: args.split,
        force: args.force,
        strict: args.strict,
        max_file_bytes: u64::from(args.max_file_mb) * 1_000_000,
        progress: std::io::stderr().is_terminal(),
        cancel: Some(cancel),
    };
    let summary = dataset::build(&args.input, &args.output, &options)?;
    println!("{}", summary.line(&args.output));
    Ok(())
}

fn render(args: RenderArgs) -> Result<()> {
    if args.output.is_none() && args.png.is_none() && args.wav.is_none() {
        bail!("nothing to write: give -o FILE.mid, --png FILE.png and/or --wav FILE.wav");
    }
    // The SoundFont first: a bad --soundfont fails before anything is written.
    let synth = match &args.wav {
        Some(_) => Some(pianoroll::audio::Synth::load(args.soundfont.as_deref())?),
        None => None,
    };
    // A MIDI file's time signature is written and drawn (dataset rows keep none: 4/4 bars).
    let (roll, grid, title, meter) = if args.input.is_dir() {
        let id = args
            .piece
            .as_deref()
            .context("INPUT is a dataset folder: name the piece with --piece ID")?;
        let (settings, piece) = dataset::find_piece(&args.input, id)?
            .with_context(|| format!("{}: no piece with id {id:?}", args.input.display()))?;
        (piece.roll, settings.grid, piece.title, None)
    } else {
        let settings = args.grid.settings()?;
        let bytes = std::fs::read(&args.input)
            .with_context(|| format!("reading {}", args.input.display()))?;
        let piece = pianoroll::read_midi(&bytes, &settings)
            .with_context(|| format!("{}", args.input.display()))?;
        (piece.roll, settings.grid, piece.title, piece.meter)
    };
    if let Some(path) = &args.output {
        let options = MidiWriteOptions {
            tempo_bpm: args.tempo,
            title: title.as_deref(),
            key: None,
            meter,
        };
        write_file(path, &pianoroll::write_midi(&roll, grid, &options))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.png {
        let options = PngOptions {
            bars: Some(meter.unwrap_or(Meter::COMMON).bars(grid)),
            ..Default::default()
        };
        write_file(path, &render_png(&roll, &options))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let (Some(path), Some(synth)) = (&args.wav, &synth) {
        let wav = pianoroll::audio::render_wav(&roll, grid, args.tempo, synth);
        write_file(path, &wav).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} ({})", path.display(), synth.describe());
    }
    Ok(())
}
