//! `serve`: the gRPC server, and a client for people (`serve generate`, `serve harmonize`,
//! `serve models`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serve::client::{Endpoint, GenerateArgs};
use serve::engine::Limits;
use serve::runtime::Device;
use serve::server::{Server, ServerConfig, TlsFiles, bind, shutdown_signal};
use serve::step::{StepMode, StepOptions};

#[derive(Parser)]
#[command(
    version,
    about = "Serve music generation over gRPC with exported pianoroll models (ONNX Runtime)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
struct ServerArgs {
    /// Folder of model folders (each with model.onnx and model.json, from `trainer export`).
    #[arg(long, default_value = "models")]
    models: PathBuf,
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    /// Also serve a web page (generate, see and hear music) and its HTTP API on this address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Also serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Also serve the Open Inference Protocol (KServe v2) over HTTP/JSON on this address, at
    /// http://ADDR/v2/... (the same models, limits, token and metrics as gRPC).
    #[arg(long)]
    rest: Option<SocketAddr>,
    /// Require `authorization: Bearer TOKEN` on every call to the composer and inference
    /// services and reflection, the page's API, v2 REST and the metrics, TOKEN being this
    /// file's text (health and the page's HTML stay open; the page asks for the token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key. The page and
    /// metrics listeners stay plain HTTP.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Close a connection whose client has not answered a keep-alive ping for this many
    /// seconds: a client that stopped reading, or vanished, gives back what it held (0: never).
    #[arg(long, default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout_seconds: u64,
    /// Close a new connection that has not sent its first request within this many seconds
    /// (the TLS handshake and HTTP/2 preface on gRPC; each request header on the page and the
    /// metrics): connections that never ask for anything hold nothing (0: never).
    #[arg(long, default_value_t = Limits::default().handshake_timeout.as_secs())]
    handshake_timeout_seconds: u64,
    /// auto: CUDA when ONNX Runtime can use it, else CPU; cuda: fail without it.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// ONNX Runtime threads per model (0: ONNX Runtime's default). Default: the machine's
    /// cores but one (for the network), shared between the models, at least one each; on
    /// CUDA, one.
    #[arg(long)]
    threads: Option<usize>,
    /// How a batch goes through a model: direct (fresh tensors each frame, states through the
    /// host), bucketed (padded to fixed shapes, buffers bound on the device, states kept
    /// there; CUDA graphs on CUDA), or auto: bucketed on CUDA, direct on the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    step: StepMode,
    /// Bucketed: pad every batch to this one shape (at least --max-concurrent), so that on CUDA
    /// a request's music does not depend on what else runs. Default: the next power of two.
    #[arg(long)]
    batch_rows: Option<usize>,
    /// Bucketed on CUDA: capture each shape's step as a CUDA graph and replay it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cuda_graphs: bool,
    /// Most frames one request may generate (and the longest primer).
    #[arg(long, default_value_t = Limits::default().max_frames)]
    max_frames: usize,
    /// Most generations running at once, over all models.
    #[arg(long, default_value_t = Limits::default().max_concurrent)]
    max_concurrent: usize,
    /// Largest request or response message in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Largest Compose response in bytes (audio makes them large; longer pieces with audio are
    /// refused up front).
    #[arg(long, default_value_t = Limits::default().max_response_bytes)]
    max_response_bytes: usize,
    /// After SIGINT/SIGTERM, seconds running generations get to finish.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
    /// The ONNX Runtime shared library (default: $ORT_DYLIB_PATH, else the project's copy).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// General MIDI SoundFont (.sf2) that Compose plays audio with (default: the system's, as
    /// Debian's timgm6mb-soundfont installs it; else a built-in synthesiser).
    #[arg(long)]
    soundfont: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Ask a running server for a piece and write it as MIDI (and PNG, WAV).
    Generate(GenerateCli),
    /// Ask a running server to harmonise a melody: its top line stays, the model writes the
    /// accompaniment under it; written as MIDI (and PNG, WAV).
    Harmonize(HarmonizeCli),
    /// List a running server's models.
    Models(EndpointArgs),
    /// Ask a running server's standard health service whether it serves: exit status 0 when
    /// SERVING, 1 otherwise (the container image's HEALTHCHECK).
    Health(HealthArgs),
}

/// Where the server is, for the client commands.
#[derive(Args)]
struct EndpointArgs {
    /// HOST:PORT, or http://HOST:PORT, or https://HOST:PORT for a server with TLS.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// The server's bearer token, in this file (servers started with --token-file).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The certificate authority (PEM) of a server with a private or self-signed certificate;
    /// implies TLS.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
}

impl EndpointArgs {
    fn endpoint(self) -> Endpoint {
        Endpoint {
            addr: self.addr,
            token_file: self.token_file,
            tls_ca: self.tls_ca,
        }
    }
}

/// What `serve generate` and `serve harmonize` share: the server, the model, the sampling, the
/// piece's setting and where it goes.
#[derive(Args)]
struct PieceArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Model name (see `serve models`).
    #[arg(long)]
    model: String,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tempo of the written MIDI file, quarter notes per minute (default: the primer's or
    /// melody's, else 120).
    #[arg(long)]
    tempo: Option<f64>,
    /// The key the piece is written in: D, "F# minor", Bbm (without a mode, the primer's;
    /// default: the primer's or melody's key, else C major). The model works in the key it was
    /// trained in.
    #[arg(long)]
    key: Option<pianoroll::key::KeyName>,
    /// Its time signature, e.g. 6/8 (default: the primer's or melody's, else 4/4); the PNG's bar
    /// lines follow it.
    #[arg(long)]
    meter: Option<pianoroll::meter::Meter>,
    /// The MIDI file to write; with --count, the folder the pieces go in (SEED.mid each).
    #[arg(short, long)]
    output: PathBuf,
    /// Also write the piano roll as a PNG (with --count: a folder, SEED.png each).
    #[arg(long)]
    png: Option<PathBuf>,
    /// Also write the piece as audio, WAV played by the server (with --count: a folder, SEED.wav
    /// each).
    #[arg(long)]
    wav: Option<PathBuf>,
    /// Write this many pieces, with seeds --seed, --seed + 1, ..., all asked at once (the
    /// server batches them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    count: u32,
}

#[derive(Args)]
struct GenerateCli {
    #[command(flatten)]
    piece: PieceArgs,
    /// Frames to generate after the primer.
    #[arg(long, default_value_t = 128)]
    frames: u32,
    /// MIDI file to continue.
    #[arg(long)]
    primer: Option<PathBuf>,
}

#[derive(Args)]
struct HarmonizeCli {
    #[command(flatten)]
    piece: PieceArgs,
    /// The melody: a MIDI file whose highest line stays on top of every frame while the model
    /// writes the accompaniment under it (a file of the tune alone, or of the tune with chords).
    #[arg(long)]
    melody: PathBuf,
    /// Frames to write (default: as many as the melody has; frames past its end are the
    /// model's alone).
    #[arg(long)]
    frames: Option<u32>,
}

impl PieceArgs {
    fn request(
        self,
        frames: u32,
        primer: Option<PathBuf>,
        melody: Option<PathBuf>,
    ) -> (Endpoint, GenerateArgs) {
        let args = GenerateArgs {
            model: self.model,
            frames,
            temperature: self.temperature,
            seed: self.seed,
            primer,
            melody,
            tempo_bpm: self.tempo,
            key: self.key,
            meter: self.meter,
            output: self.output,
            png: self.png,
            wav: self.wav,
            count: self.count,
        };
        (self.endpoint.endpoint(), args)
    }
}

fn main() -> std::process::ExitCode {
    pianoroll::binary::init_logging("info,ort=warn");
    let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
    pianoroll::binary::exit_code(runtime.block_on(run(Cli::parse())))
}

async fn run(cli: Cli) -> Result<()> {
    if cli.command.is_some() {
        // The client commands print for a reader that may stop early; the server prints nothing.
        pianoroll::binary::end_quietly_on_closed_stdout();
    }
    match cli.command {
        Some(Command::Generate(args)) => {
            let (endpoint, request) = args.piece.request(args.frames, args.primer, None);
            serve::client::generate(&endpoint, &request).await
        }
        Some(Command::Harmonize(args)) => {
            let frames = args.frames.unwrap_or(0);
            let (endpoint, request) = args.piece.request(frames, None, Some(args.melody));
            serve::client::generate(&endpoint, &request).await
        }
        Some(Command::Models(endpoint)) => serve::client::list(&endpoint.endpoint()).await,
        Some(Command::Health(args)) => health(args).await,
        None => serve_models(cli.server).await,
    }
}

async fn serve_models(args: ServerArgs) -> Result<()> {
    let threads = match args.threads {
        Some(threads) => threads,
        None => {
            // A folder that cannot be read fails at load, naming the flag.
            let models = serve::registry::model_folders(&args.models).map_or(1, |m| m.len());
            serve::server::default_threads(args.device, models)
        }
    };
    tracing::info!("ONNX Runtime threads per model: {threads}");
    let config = ServerConfig {
        models: args.models,
        device: args.device,
        threads,
        step: StepOptions {
            mode: args.step,
            batch_rows: args.batch_rows,
            cuda_graphs: args.cuda_graphs,
        },
        limits: Limits {
            max_frames: args.max_frames,
            max_concurrent: args.max_concurrent,
            max_message_bytes: args.max_message_bytes,
            max_response_bytes: args.max_response_bytes,
            idle_timeout: Duration::from_secs(args.idle_timeout_seconds),
            handshake_timeout: Duration::from_secs(args.handshake_timeout_seconds),
        },
        drain: Duration::from_secs(args.drain_seconds),
        onnxruntime: args.onnxruntime,
        soundfont: args.soundfont,
        token: args
            .token_file
            .as_deref()
            .map(serve::auth::read_token_file)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
    };
    let server = tokio::task::spawn_blocking(move || Server::load(config))
        .await
        .expect("loading models")?;
    // A listener for `flag`'s address, its failure naming the flag.
    async fn listen(flag: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener> {
        bind(addr)
            .await
            .with_context(|| format!("{flag} {addr}: cannot listen"))
    }
    let listener = listen("--addr", args.addr).await?;
    let addr = listener.local_addr()?;
    let mut server = server;
    if let Some(http) = args.http {
        let page = listen("--http", http).await?;
        tracing::info!("web page on http://{}/", page.local_addr()?);
        server = server.with_http(page);
    }
    if let Some(metrics) = args.metrics {
        let metrics = listen("--metrics", metrics).await?;
        tracing::info!("metrics on http://{}/metrics", metrics.local_addr()?);
        server = server.with_metrics(metrics);
    }
    if let Some(rest) = args.rest {
        let rest = listen("--rest", rest).await?;
        tracing::info!("KServe v2 REST on http://{}/v2", rest.local_addr()?);
        server = server.with_rest(rest);
    }
    for (name, kind, provider) in server.models() {
        tracing::info!("serving {name} ({kind}) on {provider}");
    }
    tracing::info!(
        "listening on {addr} ({} models, {} broken folders skipped)",
        server.models().len(),
        server.broken().len()
    );
    server.run(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

// `serve health`: kept apart from the server's flags so it reads (and merges) on its own.

#[derive(Args)]
struct HealthArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// The service to ask about, e.g. pianoroll.v1.Composer (default: the server as a whole).
    #[arg(long, default_value = "")]
    service: String,
    /// Fail when there is no answer within this many seconds, connecting included.
    #[arg(long, default_value_t = 5)]
    timeout_seconds: u64,
}

async fn health(args: HealthArgs) -> Result<()> {
    serve::client::health(
        &args.endpoint.endpoint(),
        &args.service,
        Duration::from_secs(args.timeout_seconds),
    )
    .await
}
