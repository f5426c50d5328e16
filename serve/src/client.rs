//! `serve generate`, `serve harmonize` and `serve models`: a client for people, over the same
//! gRPC API; and
//! `serve health`, the standard health check, for container health checks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{
    ComposeRequest, GenerateRequest, ListModelsRequest, generate_request, grid,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::auth::AddToken;

/// What `serve generate` asks for.
#[derive(Clone)]
pub struct GenerateArgs {
    pub model: String,
    pub frames: u32,
    pub temperature: Option<f32>,
    pub seed: u64,
    pub primer: Option<PathBuf>,
    /// A melody to harmonise (the `Harmonize` call; no primer then).
    pub melody: Option<PathBuf>,
    pub tempo_bpm: Option<f64>,
    /// The piece's key (default: the primer's, else C major).
    pub key: Option<pianoroll::key::KeyName>,
    /// Its time signature (default: the primer's, else 4/4).
    pub meter: Option<pianoroll::meter::Meter>,
    pub output: PathBuf,
    pub png: Option<PathBuf>,
    pub wav: Option<PathBuf>,
    /// Pieces, with seeds `seed`, `seed + 1`, ...; more than one makes `output`, `png` and
    /// `wav` folders of files named by seed.
    pub count: u32,
}

/// Where the server is and how to reach it.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    /// `HOST:PORT` (plain HTTP/2), or a URI: `http://HOST:PORT`, `https://HOST:PORT` (TLS).
    pub addr: String,
    /// The server's bearer token, in this file (servers started with `--token-file`).
    pub token_file: Option<PathBuf>,
    /// The certificate authority (PEM) that signed the server's certificate, for servers with
    /// a private or self-signed one; implies TLS. Without it, `https://` trusts the system's
    /// authorities.
    pub tls_ca: Option<PathBuf>,
}

type Client = ComposerClient<InterceptedService<Channel, AddToken>>;

/// A client of the server at `endpoint`, sending its token if there is one.
async fn connect(endpoint: &Endpoint) -> Result<Client> {
    let (channel, add_token) = channel(endpoint).await?;
    Ok(ComposerClient::with_interceptor(channel, add_token).max_decoding_message_size(usize::MAX))
}

/// A connection to the server at `endpoint` (TLS as its address or CA says), and the
/// interceptor that adds its token to each call.
async fn channel(endpoint: &Endpoint) -> Result<(Channel, AddToken)> {
    let addr = &endpoint.addr;
    let uri = match (addr.contains("://"), &endpoint.tls_ca) {
        (true, _) => addr.to_owned(),
        (false, None) => format!("http://{addr}"),
        (false, Some(_)) => format!("https://{addr}"),
    };
    let token = endpoint
        .token_file
        .as_deref()
        .map(crate::auth::read_token_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let add_token =
        AddToken::new(token.as_deref()).map_err(|e| anyhow::anyhow!("--token-file: {e}"))?;
    let mut channel = Channel::from_shared(uri.clone())
        .with_context(|| format!("--addr {addr}: not an address"))?;
    if let Some(ca) = &endpoint.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("--tls-ca {}", ca.display()))?;
        channel = channel
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .with_context(|| format!("--tls-ca {}", ca.display()))?;
    } else if uri.starts_with("https://") {
        channel = channel
            .tls_config(ClientTlsConfig::new().with_native_roots())
            .with_context(|| format!("--addr {addr}: TLS with the system's authorities"))?;
    }
    let channel = channel
        .connect()
        .await
        .with_context(|| format!("--addr {addr}: cannot connect to a server at {uri}"))?;
    Ok((channel, add_token))
}

/// The server's answer as an error; a TLS server answering a plain-text call gets a hint.
fn status_error(status: tonic::Status, endpoint: &Endpoint) -> anyhow::Error {
    let plain = endpoint.tls_ca.is_none() && !endpoint.addr.starts_with("https://");
    // What a TLS listener's refusal of plain HTTP/2 looks like from here: its alert read as
    // HTTP/2, or the connection closed under the call (this client cancels nothing itself).
    let refused = match status.code() {
        tonic::Code::Unknown => ["transport error", "h2 protocol error"]
            .iter()
            .any(|m| status.message().contains(m)),
        tonic::Code::Cancelled => true,
        _ => false,
    };
    let hint = if plain && refused {
        " (if the server uses TLS: --addr https://HOST:PORT, or --tls-ca FILE)"
    } else {
        ""
    };
    anyhow::anyhow!("server: {:?}: {}{hint}", status.code(), status.message())
}

/// Pieces `serve generate --count` asks for at once: enough for the server to batch them, and
/// well under its default limit of concurrent generations (256), which a larger count would
/// otherwise run into.
pub const PIECES_IN_FLIGHT: usize = 64;

/// Ask the server at `endpoint` for `args.count` finished pieces and write each one's MIDI (and
/// PNG, WAV) atomically. Up to [`PIECES_IN_FLIGHT`] pieces are asked for at once, so the server
/// batches them; each is written as it arrives, so a failure leaves the pieces already written.
pub async fn generate(endpoint: &Endpoint, args: &GenerateArgs) -> Result<()> {
    let primer = match &args.primer {
        Some(path) => Some(generate_request::Primer::PrimerMidi(
            std::fs::read(path).with_context(|| format!("--primer {}", path.display()))?,
        )),
        None => None,
    };
    let melody = match &args.melody {
        Some(path) => Some(generate_request::Melody::MelodyMidi(
            std::fs::read(path).with_context(|| format!("--melody {}", path.display()))?,
        )),
        None => None,
    };
    let music = Music { primer, melody };
    let client = connect(endpoint).await?;
    if args.count <= 1 {
        return compose_one(
            client,
            endpoint,
            args,
            music,
            args.seed,
            Outputs::files(args),
        )
        .await;
    }
    let last = args
        .seed
        .checked_add(u64::from(args.count) - 1)
        .with_context(|| {
            format!(
                "--seed {} --count {}: the seeds pass u64::MAX",
                args.seed, args.count
            )
        })?;
    for folder in [Some(&args.output), args.png.as_ref(), args.wav.as_ref()]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating the folder {}", folder.display()))?;
    }
    // One copy the tasks share (they must own what they hold).
    let shared = std::sync::Arc::new(args.clone());
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(PIECES_IN_FLIGHT));
    let mut pieces = tokio::task::JoinSet::new();
    for seed in args.seed..=last {
        let (client, endpoint, music) = (client.clone(), endpoint.clone(), music.clone());
        let (args, in_flight) = (shared.clone(), in_flight.clone());
        pieces.spawn(async move {
            let _turn = in_flight.acquire_owned().await.expect("never closed");
            let outputs = Outputs::in_folders(&args, seed);
            compose_one(client, &endpoint, &args, music, seed, outputs).await
        });
    }
    while let Some(done) = pieces.join_next().await {
        done.context("a generation's task")??;
    }
    Ok(())
}

/// What a piece continues or harmonises, as the request carries it.
#[derive(Clone)]
struct Music {
    primer: Option<generate_request::Primer>,
    melody: Option<generate_request::Melody>,
}

/// Where one piece's files go.
struct Outputs {
    midi: PathBuf,
    png: Option<PathBuf>,
    wav: Option<PathBuf>,
}

impl Outputs {
    /// One piece: the paths as given.
    fn files(args: &GenerateArgs) -> Outputs {
        Outputs {
            midi: args.output.clone(),
            png: args.png.clone(),
            wav: args.wav.clone(),
        }
    }

    /// One of several: SEED.mid, SEED.png, SEED.wav in the given folders.
    fn in_folders(args: &GenerateArgs, seed: u64) -> Outputs {
        Outputs {
            midi: args.output.join(format!("{seed}.mid")),
            png: args.png.as_ref().map(|d| d.join(format!("{seed}.png"))),
            wav: args.wav.as_ref().map(|d| d.join(format!("{seed}.wav"))),
        }
    }
}

async fn compose_one(
    mut client: Client,
    endpoint: &Endpoint,
    args: &GenerateArgs,
    music: Music,
    seed: u64,
    outputs: Outputs,
) -> Result<()> {
    let harmonize = music.melody.is_some();
    let request = ComposeRequest {
        generation: Some(GenerateRequest {
            model: args.model.clone(),
            frames: args.frames,
            temperature: args.temperature,
            seed,
            primer: music.primer,
            melody: music.melody,
            tempo_bpm: args.tempo_bpm,
            chunk_frames: 0,
            key: args.key.map(|k| k.to_string()).unwrap_or_default(),
            meter: args.meter.map(|m| m.to_string()).unwrap_or_default(),
        }),
        png: outputs.png.is_some(),
        audio: if outputs.wav.is_some() { "wav" } else { "" }.to_owned(),
        count: 0,
    };
    let response = match harmonize {
        true => client.harmonize(request).await,
        false => client.compose(request).await,
    }
    .map_err(|s| status_error(s, endpoint))?
    .into_inner();
    write(&outputs.midi, &response.midi)?;
    if let Some(png) = &outputs.png {
        write(png, &response.png)?;
    }
    if let Some(wav) = &outputs.wav {
        write(wav, &response.audio)?;
    }
    if let Some(summary) = response.summary {
        let after = match harmonize {
            true => "harmonising the melody".to_owned(),
            false => format!("after a {}-frame primer", summary.primer_frames),
        };
        println!(
            "{}: {} frames {after} in {:.2} s on {}, in {}, {} at {:.1} bpm -> {}",
            summary.model,
            summary.generated_frames,
            summary.seconds,
            summary.execution_provider,
            summary.key,
            summary.meter,
            summary.tempo_bpm,
            outputs.midi.display()
        );
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        bail!("the server sent nothing to write to {}", path.display());
    }
    pianoroll::atomic::write_file(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Print the server's models.
pub async fn list(endpoint: &Endpoint) -> Result<()> {
    let mut client = connect(endpoint).await?;
    let models = client
        .list_models(ListModelsRequest {})
        .await
        .map_err(|s| status_error(s, endpoint))?
        .into_inner()
        .models;
    for model in models {
        let grid = match model.grid.and_then(|g| g.step) {
            Some(grid::Step::FramesPerBeat(n)) => format!("{n} frames per beat"),
            Some(grid::Step::FrameMicros(us)) => format!("{} s frames", us as f64 / 1e6),
            None => "unknown grid".to_owned(),
        };
        let nll = model
            .metrics
            .get("test_nll_per_frame")
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        println!(
            "{}\t{} ({} head)\t{grid}\ttest NLL {nll}\t{}",
            model.name, model.kind, model.head, model.execution_provider
        );
    }
    Ok(())
}

/// `serve health`: ask the server's standard health service (`grpc.health.v1.Health/Check`)
/// about `service` ("" for the server as a whole) and succeed only on SERVING, within
/// `timeout` (connecting included). Container images have neither grpcurl nor curl, so their
/// health check runs the server's own binary.
pub async fn health(
    endpoint: &Endpoint,
    service: &str,
    timeout: std::time::Duration,
) -> Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let shown = if service.is_empty() {
        "the server"
    } else {
        service
    };
    let check = async {
        let (channel, add_token) = channel(endpoint).await?;
        let answer = HealthClient::with_interceptor(channel, add_token)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map_err(|s| status_error(s, endpoint))?
            .into_inner();
        match ServingStatus::try_from(answer.status) {
            Ok(ServingStatus::Serving) => Ok(()),
            Ok(status) => bail!("{shown}: {}", status.as_str_name()),
            Err(_) => bail!("{shown}: unknown status {}", answer.status),
        }
    };
    tokio::time::timeout(timeout, check)
        .await
        .with_context(|| {
            format!(
                "--addr {}: no answer within {} s (--timeout-seconds)",
                endpoint.addr,
                timeout.as_secs_f64()
            )
        })??;
    println!("{shown}: SERVING");
    Ok(())
}
