//! What the server's end-to-end tests (`serve_*.rs`, one test binary each) share: tiny LSTM and
//! RWKV models trained on the bundled data and exported, a real gRPC server on 127.0.0.1 serving
//! them, and the requests' helpers.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{GenerateRequest, generate_response};
use serve::engine::Limits;
use serve::server::{Server, ServerConfig};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use trainer::config::TrainConfig;
use trainer::model::ModelConfig;
use trainer::rwkv::WkvMode;
use trainer::train::{RunOptions, train};

/// The trainer's test fixtures (the small dataset, the tiny models, the quick training
/// configuration), one home for both crates' tests.
#[path = "../../../trainer/tests/common/mod.rs"]
mod fixtures;

use fixtures::{small_dataset, tiny_lstm, tiny_rwkv, tiny_train_config, with_nade};

/// Models exported from tiny runs, once per test process (so once per `serve_*` binary: about a
/// second of CPU): `lstm`, `lstm-nade`, `rwkv`, a broken folder and a model folder of card
/// format 1 (written before sampling moved into the graph), which the server refuses. The run
/// folders are beside them, in `runs/`.
pub fn models() -> &'static Path {
    static MODELS: OnceLock<PathBuf> = OnceLock::new();
    MODELS.get_or_init(|| {
        // A folder of this test binary's own, so binaries run at once do not share it.
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(concat!("serve-test-models-", env!("CARGO_CRATE_NAME")));
        let _ = std::fs::remove_dir_all(&root);
        let dataset = small_dataset(&root, 12);
        let models = root.join("models");
        let lstm = ModelConfig::Lstm(tiny_lstm(32, 1));
        let lstm_nade = with_nade(lstm, 16);
        let rwkv = ModelConfig::Rwkv(tiny_rwkv(16, 2));
        for (name, model) in [("lstm", lstm), ("lstm-nade", lstm_nade), ("rwkv", rwkv)] {
            let config = TrainConfig {
                epochs: 2,
                batch_size: 4,
                warmup_steps: 3,
                seed: 3,
                // The NADE model as the shipped ones are trained: a silent frame before every
                // piece, which the server feeds before a primer too. serve_compose checks that it
                // and `trainer sample` still agree; a model this small barely hears that one
                // frame, so serve_generate checks that the server feeds it on a shipped model.
                silent_start: name == "lstm-nade",
                ..tiny_train_config(model, &dataset)
            };
            let run = root.join("runs").join(name);
            let chunked = RunOptions {
                wkv: WkvMode::Chunked(16),
                ..RunOptions::on(tch::Device::Cpu)
            };
            train(&config, &run, chunked).unwrap();
            trainer::export::export(&run, &models.join(name), false).unwrap();
        }
        let old = models.join("format-1");
        std::fs::create_dir_all(&old).unwrap();
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures/old-rwkv-model");
        for file in ["model.json", "model.onnx"] {
            std::fs::copy(fixture.join(file), old.join(file)).unwrap();
        }
        // A folder that looks like a model but is not: reported, and the others still serve.
        let broken = models.join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("model.json"), "{ not json").unwrap();
        std::fs::write(broken.join("model.onnx"), "not onnx").unwrap();
        models
    })
}

/// A server running on a free port of 127.0.0.1 until the returned sender fires or drops.
pub struct Running {
    pub addr: SocketAddr,
    /// Each model's batching statistics.
    pub batch_stats: std::collections::BTreeMap<String, std::sync::Arc<serve::metrics::BatchStats>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The test models with `limits`, until [`Running::stop`].
    pub async fn start(limits: Limits) -> Running {
        Running::serve(Running::load(limits)).await
    }

    /// The test models with `limits`, until `shutdown` completes.
    pub async fn start_until(
        limits: Limits,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Running {
        Running::launch(Running::load(limits), shutdown).await
    }

    pub fn load(limits: Limits) -> Server {
        let config = ServerConfig {
            limits,
            drain: Duration::from_secs(20),
            ..ServerConfig::cpu(models().to_owned())
        };
        let server = Server::load(config).unwrap();
        assert_eq!(server.broken().len(), 2, "the broken folders are reported");
        server
    }

    /// `server` (loaded by the caller, with its page or metrics listeners) on a free port,
    /// until [`Running::stop`].
    pub async fn serve(server: Server) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut running = Running::launch(server, async {
            let _ = stopped.await;
        })
        .await;
        running.stop = Some(stop);
        running
    }

    async fn launch(
        server: Server,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Running {
        let listener = serve::server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let batch_stats = server.batch_stats();
        let task = tokio::spawn(async move {
            server.run(listener, shutdown).await.unwrap();
        });
        Running {
            addr,
            batch_stats,
            stop: None,
            task,
        }
    }

    pub async fn client(&self) -> ComposerClient<Channel> {
        ComposerClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    models(); // train before the clock of any async timeout starts
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn request(model: &str, frames: u32, seed: u64) -> GenerateRequest {
    GenerateRequest {
        model: model.to_owned(),
        frames,
        temperature: Some(1.0),
        seed,
        chunk_frames: 5,
        ..Default::default()
    }
}

/// All frames of a Generate stream, checking chunk order and the summary.
pub async fn generate(
    client: &mut ComposerClient<Channel>,
    request: GenerateRequest,
) -> Vec<Vec<u32>> {
    let wanted = request.frames;
    let mut stream = client.generate(request).await.unwrap().into_inner();
    let mut frames = Vec::new();
    let mut summary = None;
    while let Some(message) = stream.next().await {
        match message.unwrap().event.unwrap() {
            generate_response::Event::Chunk(chunk) => {
                assert_eq!(chunk.first_frame as usize, frames.len(), "chunks in order");
                frames.extend(chunk.frames.into_iter().map(|f| f.pitches));
            }
            generate_response::Event::Summary(s) => summary = Some(s),
        }
    }
    let summary = summary.expect("the stream ends with a summary");
    assert_eq!(summary.generated_frames, wanted);
    assert_eq!(summary.execution_provider, "CPU");
    assert_eq!(frames.len(), wanted as usize);
    frames
}

pub async fn status_of(client: &mut ComposerClient<Channel>, request: GenerateRequest) -> Code {
    match client.generate(request).await {
        Ok(response) => {
            let mut stream = response.into_inner();
            match stream.next().await {
                Some(Err(status)) => status.code(),
                _ => Code::Ok,
            }
        }
        Err(status) => status.code(),
    }
}
