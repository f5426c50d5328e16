//! `serve generate` and `serve models`: a client for people, over the same gRPC API.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{
    ComposeRequest, GenerateRequest, ListModelsRequest, generate_request, grid,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::auth::AddToken;

/// What `serve generate` asks for.
pub struct GenerateArgs {
    pub model: String,
    pub frames: u32,
    pub temperature: Option<f32>,
    pub seed: u64,
    pub primer: Option<PathBuf>,
    pub tempo_bpm: Option<f64>,
    pub output: PathBuf,
    pub png: Option<PathBuf>,
    pub wav: Option<PathBuf>,
    /// The server's bearer token, in this file.
    pub token_file: Option<PathBuf>,
}

type Client = ComposerClient<InterceptedService<Channel, AddToken>>;

/// A client of the server at `addr`, sending the token of `token_file` if there is one.
async fn connect(addr: &str, token_file: Option<&Path>) -> Result<Client> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let token = token_file
        .map(crate::auth::read_token_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let add_token =
        AddToken::new(token.as_deref()).map_err(|e| anyhow::anyhow!("--token-file: {e}"))?;
    let channel = Channel::from_shared(uri.clone())
        .with_context(|| format!("--addr {addr}: not an address"))?
        .connect()
        .await
        .with_context(|| format!("--addr {addr}: cannot connect to a server at {uri}"))?;
    Ok(ComposerClient::with_interceptor(channel, add_token).max_decoding_message_size(usize::MAX))
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("server: {:?}: {}", status.code(), status.message())
}

/// Ask the server at `addr` for a finished piece and write its MIDI (and PNG) atomically.
pub async fn generate(addr: &str, args: &GenerateArgs) -> Result<()> {
    let primer = match &args.primer {
        Some(path) => Some(generate_request::Primer::PrimerMidi(
            std::fs::read(path).with_context(|| format!("--primer {}", path.display()))?,
        )),
        None => None,
    };
    let mut client = connect(addr, args.token_file.as_deref()).await?;
    let response = client
        .compose(ComposeRequest {
            generation: Some(GenerateRequest {
                model: args.model.clone(),
                frames: args.frames,
                temperature: args.temperature,
                seed: args.seed,
                primer,
                tempo_bpm: args.tempo_bpm,
                chunk_frames: 0,
            }),
            png: args.png.is_some(),
            audio: if args.wav.is_some() { "wav" } else { "" }.to_owned(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    write(&args.output, &response.midi)?;
    if let Some(png) = &args.png {
        write(png, &response.png)?;
    }
    if let Some(wav) = &args.wav {
        write(wav, &response.audio)?;
    }
    if let Some(summary) = response.summary {
        println!(
            "{}: {} frames after a {}-frame primer in {:.2} s on {} -> {}",
            summary.model,
            summary.generated_frames,
            summary.primer_frames,
            summary.seconds,
            summary.execution_provider,
            args.output.display()
        );
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        bail!("the server sent nothing to write to {}", path.display());
    }
    pipeline::atomic::write_file(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Print the server's models.
pub async fn list(addr: &str, token_file: Option<&Path>) -> Result<()> {
    let mut client = connect(addr, token_file).await?;
    let models = client
        .list_models(ListModelsRequest {})
        .await
        .map_err(status_error)?
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
