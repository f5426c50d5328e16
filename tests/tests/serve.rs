//! The server end to end: tiny LSTM and RWKV models trained on the bundled data and exported,
//! a real gRPC server on 127.0.0.1, real clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pianoroll::{Frame, RollSettings};
use pipeline::dataset::{BuildOptions, Split, build};
use proto::inference::ServerLiveRequest;
use proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{
    ComposeRequest, Frame as WireFrame, Frames, GenerateRequest, ListModelsRequest,
    generate_request, generate_response,
};
use serve::engine::Limits;
use serve::runtime::Device;
use serve::server::{SERVICE_NAME, Server, ServerConfig};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use trainer::config::{Schedule, TrainConfig};
use trainer::head::HeadConfig;
use trainer::lstm::LstmConfig;
use trainer::model::ModelConfig;
use trainer::rwkv::RwkvConfig;
use trainer::rwkv::WkvMode;
use trainer::train::{RunOptions, train};

/// Models exported from tiny runs, once per test process: `lstm`, `lstm-nade`, `rwkv`, a
/// broken folder and a model folder of card format 1 (written before sampling moved into the
/// graph), which the server refuses.
fn models() -> &'static Path {
    static MODELS: OnceLock<PathBuf> = OnceLock::new();
    MODELS.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-test-models");
        let _ = std::fs::remove_dir_all(&root);
        let input = root.join("input");
        for split in Split::ALL {
            let folder = input.join(split.as_str());
            std::fs::create_dir_all(&folder).unwrap();
            let mut files: Vec<_> =
                std::fs::read_dir(pianoroll_tests::nottingham().join(split.as_str()))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
            files.sort();
            for file in files.into_iter().take(12) {
                std::fs::copy(&file, folder.join(file.file_name().unwrap())).unwrap();
            }
        }
        let dataset = root.join("dataset");
        build(&input, &dataset, &BuildOptions::default()).unwrap();
        let models = root.join("models");
        let lstm = ModelConfig::Lstm(LstmConfig {
            hidden: 32,
            layers: 1,
            dropout_in: 0.25,
            dropout_out: 0.1,
            dropout_between: 0.0,
            batch_norm: true,
            head: Default::default(),
        });
        let rwkv = ModelConfig::Rwkv(RwkvConfig {
            layers: 2,
            embd: 16,
            ffn_mult: 4,
            dropout: 0.0,
            dropout_in: 0.0,
            head: Default::default(),
        });
        let lstm_nade = match lstm {
            ModelConfig::Lstm(c) => ModelConfig::Lstm(LstmConfig {
                head: HeadConfig::Nade { hidden: 16 },
                ..c
            }),
            ModelConfig::Rwkv(_) => unreachable!(),
        };
        for (name, model) in [("lstm", lstm), ("lstm-nade", lstm_nade), ("rwkv", rwkv)] {
            let config = TrainConfig {
                model,
                dataset: dataset.clone(),
                roll_settings: RollSettings::benchmark(),
                epochs: 2,
                max_steps: None,
                batch_size: 4,
                seq_len: None,
                lr: 1e-2,
                weight_decay: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                schedule: Schedule::Cosine,
                warmup_steps: 3,
                clip_norm: 1.0,
                patience: None,
                transpose_augment: 0,
                ema_decay: None,
                note_dropout: 0.0,
                seed: 3,
                recipe: None,
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
struct Running {
    addr: SocketAddr,
    /// Each model's batching statistics.
    batch_stats: std::collections::BTreeMap<String, std::sync::Arc<serve::metrics::BatchStats>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The test models with `limits`, until [`Running::stop`].
    async fn start(limits: Limits) -> Running {
        Running::serve(Running::load(limits)).await
    }

    /// The test models with `limits`, until `shutdown` completes.
    async fn start_until(
        limits: Limits,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Running {
        Running::launch(Running::load(limits), shutdown).await
    }

    fn load(limits: Limits) -> Server {
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
    async fn serve(server: Server) -> Running {
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

    async fn client(&self) -> ComposerClient<Channel> {
        ComposerClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    models(); // train before the clock of any async timeout starts
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn request(model: &str, frames: u32, seed: u64) -> GenerateRequest {
    GenerateRequest {
        model: model.to_owned(),
        frames,
        temperature: Some(1.0),
        seed,
        primer: None,
        tempo_bpm: None,
        chunk_frames: 5,
    }
}

/// All frames of a Generate stream, checking chunk order and the summary.
async fn generate(client: &mut ComposerClient<Channel>, request: GenerateRequest) -> Vec<Vec<u32>> {
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

#[test]
fn health_and_reflection_answer() {
    runtime().block_on(async {
        let server = Running::start(Limits::default()).await;
        for service in [SERVICE_NAME, serve::v2::grpc::SERVICE_NAME, ""] {
            assert_serving(server.channel().await, service).await;
        }

        let names = reflection_services(server.channel().await, None)
            .await
            .unwrap();
        assert!(names.iter().any(|n| n == SERVICE_NAME), "{names:?}");
        assert!(
            names.iter().any(|n| n == serve::v2::grpc::SERVICE_NAME),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
        server.stop().await;
    });
}

/// The health service says `service` is serving (no token needed).
async fn assert_serving(channel: Channel, service: &str) {
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        "{service}"
    );
}

/// The services a server lists through reflection (v1), asked with `token` if there is one.
async fn reflection_services(
    channel: Channel,
    token: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::with_interceptor(
        channel,
        serve::auth::AddToken::new(token).unwrap(),
    );
    let requests = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let mut responses = reflection
        .server_reflection_info(requests)
        .await?
        .into_inner();
    let response = responses.next().await.unwrap()?;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

#[test]
fn list_models_describes_each_working_model() {
    runtime().block_on(async {
        let server = Running::start(Limits::default()).await;
        let models = server
            .client()
            .await
            .list_models(ListModelsRequest {})
            .await
            .unwrap()
            .into_inner()
            .models;
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["lstm", "lstm-nade", "rwkv"],
            "the broken folders are left out"
        );
        for model in &models {
            assert!(model.name.starts_with(&model.kind));
            let head = if model.name.ends_with("nade") {
                "nade"
            } else {
                "bernoulli"
            };
            assert_eq!(model.head, head);
            assert_eq!(model.execution_provider, "CPU");
            assert_eq!((model.lowest_pitch, model.pitch_count), (21, 88));
            assert_eq!(model.transpose, "to_c");
            assert!(model.metrics["test_nll_per_frame"] > 0.0);
            assert!(model.metrics["parameters"] > 0.0);
        }
        server.stop().await;
    });
}

/// The requests of the batching test: all three models, several seeds and temperatures, with and
/// without primers, different lengths (so generations join and leave the batch at different
/// frames).
fn mixed_requests() -> Vec<GenerateRequest> {
    let primer_midi =
        std::fs::read(pianoroll_tests::nottingham().join("test/ashover_simple_chords_11.mid"))
            .unwrap();
    (0..32u64)
        .map(|i| {
            let model = ["lstm", "rwkv", "lstm-nade"][i as usize % 3];
            let mut r = request(model, 20 + (i as u32 * 7) % 50, 1000 + i / 4);
            r.temperature = Some([0.7, 1.0, 1.3][i as usize % 3]);
            r.primer = match i % 4 {
                1 => Some(generate_request::Primer::PrimerMidi(primer_midi.clone())),
                2 => Some(generate_request::Primer::PrimerFrames(Frames {
                    frames: (0..(i as u32 % 9))
                        .map(|k| WireFrame {
                            pitches: vec![48 + k, 60 + k],
                        })
                        .collect(),
                })),
                _ => None,
            };
            r
        })
        .collect()
}

#[test]
fn concurrent_streams_equal_the_same_requests_one_at_a_time() {
    runtime().block_on(async {
        let server = Running::start(Limits::default()).await;
        let requests = mixed_requests();
        let mut alone = Vec::new();
        for r in &requests {
            alone.push(generate(&mut server.client().await, r.clone()).await);
        }
        let together = futures_join(
            requests
                .iter()
                .map(|r| {
                    let r = r.clone();
                    let addr = server.addr;
                    async move {
                        let mut client = ComposerClient::connect(format!("http://{addr}"))
                            .await
                            .unwrap();
                        generate(&mut client, r).await
                    }
                })
                .collect(),
        )
        .await;
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert_eq!(
                a, t,
                "request {i}: concurrent frames differ from the lone run"
            );
        }
        // Different seeds give different music (the generators are really per request).
        assert_ne!(alone[0], alone[4]);
        for (model, stats) in &server.batch_stats {
            let peak = stats.peak_batch.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                peak > 1,
                "{model} ran batches of several generations (largest {peak})"
            );
        }
        server.stop().await;
    });
}

/// Run futures concurrently on the runtime and collect their outputs in order.
async fn futures_join<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn status_of(client: &mut ComposerClient<Channel>, request: GenerateRequest) -> Code {
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

#[test]
fn bad_requests_get_their_status_and_the_server_keeps_serving() {
    runtime().block_on(async {
        let limits = Limits {
            max_frames: 500,
            max_concurrent: 2,
            max_message_bytes: 64 * 1024,
            ..Limits::default()
        };
        let server = Running::start(limits).await;
        let mut client = server.client().await;
        let with = |f: &dyn Fn(&mut GenerateRequest)| {
            let mut r = request("lstm", 10, 1);
            f(&mut r);
            r
        };
        let cases: Vec<(&str, GenerateRequest, Code)> = vec![
            (
                "unknown model",
                with(&|r| r.model = "nope".into()),
                Code::NotFound,
            ),
            ("no frames", with(&|r| r.frames = 0), Code::InvalidArgument),
            (
                "negative temperature",
                with(&|r| r.temperature = Some(-1.0)),
                Code::InvalidArgument,
            ),
            (
                "zero temperature",
                with(&|r| r.temperature = Some(0.0)),
                Code::InvalidArgument,
            ),
            (
                "NaN temperature",
                with(&|r| r.temperature = Some(f32::NAN)),
                Code::InvalidArgument,
            ),
            (
                "bad tempo",
                with(&|r| r.tempo_bpm = Some(-5.0)),
                Code::InvalidArgument,
            ),
            (
                "too many frames",
                with(&|r| r.frames = 501),
                Code::ResourceExhausted,
            ),
            (
                "pitch off the keyboard",
                with(&|r| {
                    r.primer = Some(generate_request::Primer::PrimerFrames(Frames {
                        frames: vec![WireFrame {
                            pitches: vec![60, 200],
                        }],
                    }))
                }),
                Code::InvalidArgument,
            ),
            (
                "primer that is not MIDI",
                with(&|r| {
                    r.primer = Some(generate_request::Primer::PrimerMidi(b"RIFF....".to_vec()))
                }),
                Code::InvalidArgument,
            ),
            (
                "primer over the frame limit",
                with(&|r| {
                    r.primer = Some(generate_request::Primer::PrimerFrames(Frames {
                        frames: vec![WireFrame { pitches: vec![60] }; 501],
                    }))
                }),
                Code::ResourceExhausted,
            ),
            (
                "message over the size limit",
                with(&|r| r.primer = Some(generate_request::Primer::PrimerMidi(vec![0; 100_000]))),
                Code::OutOfRange,
            ),
        ];
        for (what, request, code) in cases {
            assert_eq!(status_of(&mut client, request).await, code, "{what}");
        }
        let status = client
            .compose(ComposeRequest {
                generation: None,
                png: false,
                audio: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "compose without a generation"
        );

        server.stop().await;

        // Over the concurrency limit: two generations that would run for minutes hold both
        // slots (generations do not wait for their readers, so shorter ones may be done first).
        let server = Running::start(Limits {
            max_frames: 1_000_000,
            ..limits
        })
        .await;
        let mut client = server.client().await;
        let mut long = Vec::new();
        for seed in 0..2 {
            let mut r = request("rwkv", 1_000_000, seed);
            r.chunk_frames = 1;
            let mut stream = client.generate(r).await.unwrap().into_inner();
            stream.next().await.unwrap().unwrap(); // running
            long.push(stream);
        }
        assert_eq!(
            status_of(&mut client, request("lstm", 10, 1)).await,
            Code::ResourceExhausted
        );
        drop(long);

        // Still serving: a good request works once the slots are free again.
        let frames = eventually(|| {
            let mut client = client.clone();
            async move {
                let mut stream = client
                    .generate(request("lstm", 10, 1))
                    .await
                    .ok()?
                    .into_inner();
                let mut n = 0;
                while let Some(message) = stream.next().await {
                    if let generate_response::Event::Chunk(c) = message.ok()?.event? {
                        n += c.frames.len();
                    }
                }
                Some(n)
            }
        })
        .await;
        assert_eq!(frames, 10);
        server.stop().await;
    });
}

/// Retry `attempt` for up to 10 s until it gives `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    mut attempt: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_cancelled_stream_frees_its_slot() {
    runtime().block_on(async {
        let limits = Limits {
            max_frames: 1_000_000,
            max_concurrent: 1,
            ..Limits::default()
        };
        let server = Running::start(limits).await;
        let mut client = server.client().await;
        // A generation that would run for minutes.
        let mut stream = client
            .generate(request("rwkv", 1_000_000, 9))
            .await
            .unwrap()
            .into_inner();
        stream.next().await.unwrap().unwrap();
        assert_eq!(
            status_of(&mut client, request("lstm", 5, 1)).await,
            Code::ResourceExhausted
        );
        drop(stream); // the client goes away
        let started = Instant::now();
        eventually(|| {
            let mut client = client.clone();
            async move {
                (status_of(&mut client, request("lstm", 5, 1)).await == Code::Ok).then_some(())
            }
        })
        .await;
        eprintln!("slot free {:?} after the cancel", started.elapsed());
        server.stop().await;
    });
}

#[test]
fn compose_writes_midi_and_png_of_the_streamed_music() {
    runtime().block_on(async {
        let server = Running::start(Limits::default()).await;
        let mut client = server.client().await;
        let mut r = request("rwkv", 48, 77);
        r.primer = Some(generate_request::Primer::PrimerFrames(Frames {
            frames: vec![WireFrame { pitches: vec![60, 64, 67] }; 4],
        }));
        r.tempo_bpm = Some(90.0);
        let streamed = generate(&mut client, r.clone()).await;
        let composed = client
            .compose(ComposeRequest {
                generation: Some(r),
                png: true,
                audio: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(composed.png.starts_with(b"\x89PNG\r\n\x1a\n"));
        // The MIDI file holds the primer and then exactly the streamed frames.
        let as_written = RollSettings {
            transpose: pianoroll::Transpose::None,
            ..RollSettings::benchmark()
        };
        let piece = pianoroll::read_midi(&composed.midi, &as_written).unwrap();
        let frames: Vec<Vec<u32>> = piece
            .roll
            .frames()
            .iter()
            .map(|f| f.pitches().map(u32::from).collect())
            .collect();
        assert_eq!(&frames[..4], vec![vec![60, 64, 67]; 4].as_slice());
        // A roll read back from MIDI ends at its last note: compare what it has.
        let generated = &frames[4..];
        assert!(generated.len() <= streamed.len());
        assert_eq!(generated, &streamed[..generated.len()]);
        assert!(streamed[generated.len()..].iter().all(Vec::is_empty));
        let summary = composed.summary.unwrap();
        assert_eq!((summary.primer_frames, summary.generated_frames), (4, 48));

        // Other MIDI software opens the file: mido reads the notes back.
        if let Some(python) = pianoroll_tests::python() {
            let path = models().parent().unwrap().join("composed.mid");
            std::fs::write(&path, &composed.midi).unwrap();
            let output = std::process::Command::new(python)
                .args([
                    "-c",
                    "import mido,sys; m=mido.MidiFile(sys.argv[1]); \
                     print(sum(1 for t in m.tracks for e in t if e.type=='note_on' and e.velocity>0))",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let notes: usize = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();
            let runs = pianoroll::PianoRoll::from_frames(
                frames
                    .iter()
                    .map(|p| Frame::from_pitches(p.iter().map(|&x| x as u8)).unwrap())
                    .collect(),
            )
            .note_runs()
            .len();
            assert_eq!(notes, runs, "mido sees every note of the roll");
        }
        server.stop().await;
    });
}

/// The same model, primer, seed and temperature give the same MIDI file from `trainer sample`
/// (tch) and from the server (the exported graph on ONNX Runtime), for both heads.
#[test]
fn trainer_sample_and_the_server_write_the_same_midi() {
    let runs = models().parent().unwrap().join("runs");
    let primer_path = pianoroll_tests::nottingham().join("test/ashover_simple_chords_11.mid");
    runtime().block_on(async {
        let server = Running::start(Limits::default()).await;
        let mut client = server.client().await;
        for name in ["lstm", "lstm-nade", "rwkv"] {
            let mut r = request(name, 64, 2024);
            r.temperature = Some(0.9);
            r.primer = Some(generate_request::Primer::PrimerMidi(
                std::fs::read(&primer_path).unwrap(),
            ));
            let served = client
                .compose(ComposeRequest {
                    generation: Some(r),
                    png: false,
                    audio: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .midi;
            let sampled = tokio::task::block_in_place(|| {
                let loaded = trainer::run::load(&runs.join(name), tch::Device::Cpu).unwrap();
                let settings = loaded.config.roll_settings;
                let primer = trainer::sample::primer_frames(&primer_path, &settings).unwrap();
                let roll = trainer::sample::generate(
                    &loaded.model,
                    &primer,
                    64,
                    0.9,
                    2024,
                    tch::Device::Cpu,
                )
                .unwrap();
                trainer::sample::sample_midi(&loaded, &roll)
            });
            assert!(served.len() > 100, "{name}: a real piece");
            assert!(
                served == sampled,
                "{name}: the server and trainer sample differ"
            );
        }
        server.stop().await;
    });
}

/// A model folder whose card the server does not understand is refused with a message that
/// names the file and says what to do; the other models still serve.
#[test]
fn a_card_the_server_cannot_drive_is_refused_by_name() {
    let server = Server::load(ServerConfig::cpu(models().to_owned())).unwrap();
    let old = server
        .broken()
        .iter()
        .find(|b| b.folder.ends_with("format-1"))
        .expect("the format 1 folder is refused");
    assert!(
        old.reason.contains("model.json") && old.reason.contains("trainer export"),
        "{}",
        old.reason
    );
    assert_eq!(server.models().len(), 3);
}

/// `Compose` with `audio: "wav"` plays the piece it composed: a WAV as long as the primer and the
/// generated frames, the same bytes for the same request, and a format it does not write is
/// refused. sox and Python's `wave` read the file.
#[test]
fn compose_returns_audio_of_the_piece() {
    runtime().block_on(async {
        let limits = Limits {
            max_response_bytes: 4 << 20, // 3 MiB of audio, with the room kept for MIDI and PNG
            ..Limits::default()
        };
        let server = Running::start(limits).await;
        let mut client = server.client().await;
        let mut r = request("lstm-nade", 40, 5);
        r.primer = Some(generate_request::Primer::PrimerFrames(Frames {
            frames: vec![
                WireFrame {
                    pitches: vec![60, 64, 67]
                };
                8
            ],
        }));
        let compose = |r: &GenerateRequest, audio: &str| ComposeRequest {
            generation: Some(r.clone()),
            png: false,
            audio: audio.to_owned(),
        };
        let first = client
            .compose(compose(&r, "wav"))
            .await
            .unwrap()
            .into_inner();
        let again = client
            .compose(compose(&r, "wav"))
            .await
            .unwrap()
            .into_inner();
        assert!(first.audio.starts_with(b"RIFF"));
        assert!(
            first.audio == again.audio,
            "the same request, the same audio"
        );
        // 48 frames of 0.25 s, 16-bit stereo at 44.1 kHz, after the 44-byte header.
        assert_eq!(first.audio.len() - 44, 48 * 11_025 * 4);
        let status = client.compose(compose(&r, "mp3")).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("mp3"), "{}", status.message());
        let none = client.compose(compose(&r, "")).await.unwrap().into_inner();
        assert!(none.audio.is_empty());
        // 8 + 40 frames are 2.1 MB of WAV; 8 + 80 would be 3.9 MB, over the limit: refused up
        // front with a message, and the same piece without audio is fine.
        r.frames = 80;
        let status = client.compose(compose(&r, "wav")).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("fewer frames"),
            "{}",
            status.message()
        );
        client.compose(compose(&r, "")).await.unwrap();

        let path = models().parent().unwrap().join("composed.wav");
        std::fs::write(&path, &first.audio).unwrap();
        if let Some(python) = pianoroll_tests::python() {
            let output = std::process::Command::new(python)
                .args([
                    "-c",
                    "import sys, wave; w = wave.open(sys.argv[1]); \
                     print(w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes())",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&output.stdout).trim(),
                "2 44100 2 529200"
            );
        }
        match std::process::Command::new("sox")
            .arg("--i")
            .arg("-D")
            .arg(&path)
            .output()
        {
            Ok(output) => {
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let seconds: f64 = String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse()
                    .unwrap();
                assert_eq!(seconds, 12.0, "48 frames of 0.25 s");
            }
            Err(_) => eprintln!("skipped the sox check: no sox on this machine"),
        }
        server.stop().await;
    });
}

/// `--metrics`: Prometheus text that counts requests by method, model and status, the frames
/// generated, the generations running, and each model's batch sizes and step times; a parser
/// others wrote (Python's prometheus_client) reads it.
#[test]
fn metrics_count_requests_frames_and_steps() {
    runtime().block_on(async {
        let server = Server::load(ServerConfig::cpu(models().to_owned())).unwrap();
        let metrics = serve::server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        let server = Running::serve(server.with_metrics(metrics)).await;
        let mut client = server.client().await;
        generate(&mut client, request("lstm", 20, 1)).await;
        generate(&mut client, request("lstm", 12, 2)).await;
        assert_eq!(status_of(&mut client, request("nope", 5, 1)).await, Code::NotFound);
        let mut hot = request("rwkv", 5, 1);
        hot.temperature = Some(-1.0);
        assert_eq!(status_of(&mut client, hot).await, Code::InvalidArgument);

        let (head, text) = pianoroll_tests::http_get(metrics_addr, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_lowercase().contains("text/plain; version=0.0.4"), "{head}");
        let value = |line_start: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(line_start))
                .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
                .trim()
                .parse()
                .unwrap()
        };
        let requests = |model: &str, code: &str| {
            value(&format!(
                "pianoroll_requests_total{{method=\"Generate\",model=\"{model}\",code=\"{code}\"}}"
            ))
        };
        assert_eq!(requests("lstm", "Ok"), 2.0);
        assert_eq!(requests("(unknown)", "NotFound"), 1.0);
        assert_eq!(requests("rwkv", "InvalidArgument"), 1.0);
        assert_eq!(value("pianoroll_generated_frames_total{model=\"lstm\"}"), 32.0);
        assert_eq!(value("pianoroll_active_generations "), 0.0);
        let steps = value("pianoroll_step_seconds_count{model=\"lstm\"}");
        assert!(steps >= 32.0, "every frame is a step: {steps}");
        assert_eq!(
            value("pianoroll_batch_size_bucket{model=\"lstm\",le=\"+Inf\"}"),
            value("pianoroll_batch_size_count{model=\"lstm\"}")
        );
        assert_eq!(text.matches("pianoroll_model_info{").count(), 3);
        assert!(text.contains("head=\"nade\",provider=\"CPU\"} 1"), "{text}");

        if let Some(python) = pianoroll_tests::python() {
            let path = models().parent().unwrap().join("metrics.txt");
            std::fs::write(&path, text).unwrap();
            let output = std::process::Command::new(python)
                .args([
                    "-c",
                    "import sys; from prometheus_client.parser import text_string_to_metric_families as parse; \
                     print(sorted(f.name + ':' + f.type for f in parse(open(sys.argv[1]).read())))",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let families = String::from_utf8_lossy(&output.stdout);
            for family in [
                "pianoroll_requests:counter",
                "pianoroll_generated_frames:counter",
                "pianoroll_active_generations:gauge",
                "pianoroll_batch_size:histogram",
                "pianoroll_step_seconds:histogram",
                "pianoroll_model_info:gauge",
            ] {
                assert!(families.contains(family), "{family} in {families}");
            }
        }
        server.stop().await;
    });
}

/// `--token-file`: every call to the composer and inference services and to reflection needs
/// `authorization: Bearer TOKEN`; none or a wrong one gets UNAUTHENTICATED, the right one is
/// served, and health needs none.
#[test]
fn a_token_guards_the_composer_but_not_health() {
    runtime().block_on(async {
        let server = Server::load(ServerConfig {
            token: Some("s3cret-token".to_owned()),
            ..ServerConfig::cpu(models().to_owned())
        })
        .unwrap();
        let server = Running::serve(server).await;
        let addr = server.addr;
        let channel = server.channel().await;
        let with = |token: Option<&str>| {
            ComposerClient::with_interceptor(
                channel.clone(),
                serve::auth::AddToken::new(token).unwrap(),
            )
        };
        for (token, why) in [(None, "this server needs"), (Some("guess"), "wrong token")] {
            let status = with(token)
                .list_models(ListModelsRequest {})
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
            assert!(status.message().contains(why), "{}", status.message());
            let status = with(token)
                .generate(request("lstm", 4, 1))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated);
            // The Open Inference Protocol service is guarded too, its liveness included.
            let mut inference = GrpcInferenceServiceClient::with_interceptor(
                channel.clone(),
                serve::auth::AddToken::new(token).unwrap(),
            );
            let status = inference
                .server_live(ServerLiveRequest {})
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated);
            let status = reflection_services(channel.clone(), token)
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated);
        }
        let services = reflection_services(channel.clone(), Some("s3cret-token"))
            .await
            .unwrap();
        assert!(services.iter().any(|s| s == SERVICE_NAME), "{services:?}");
        let mut inference = GrpcInferenceServiceClient::with_interceptor(
            channel.clone(),
            serve::auth::AddToken::new(Some("s3cret-token")).unwrap(),
        );
        assert!(
            inference
                .server_live(ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
        let mut client = with(Some("s3cret-token"));
        let models = client.list_models(ListModelsRequest {}).await.unwrap();
        assert_eq!(models.into_inner().models.len(), 3);
        let mut stream = client
            .generate(request("lstm", 4, 1))
            .await
            .unwrap()
            .into_inner();
        while let Some(message) = stream.next().await {
            message.unwrap();
        }
        assert_serving(channel.clone(), SERVICE_NAME).await;
        // The command-line client reads the token from a file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token\n").unwrap();
        let endpoint = serve::client::Endpoint {
            addr: addr.to_string(),
            token_file: Some(file),
            tls_ca: None,
        };
        serve::client::list(&endpoint).await.unwrap();
        let error = serve::client::list(&serve::client::Endpoint {
            token_file: None,
            ..endpoint
        })
        .await
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("Unauthenticated"),
            "{error:#}"
        );
        server.stop().await;
    });
}

/// The models the repository ships (models/) load, say what they are, and make music over gRPC.
#[test]
fn the_shipped_models_serve() {
    let shipped = pianoroll_tests::repo_root().join("models");
    runtime().block_on(async {
        let server = Server::load(ServerConfig::cpu(shipped.clone())).unwrap();
        assert!(server.broken().is_empty(), "{:?}", server.broken());
        let server = Running::serve(server).await;
        let mut client = server.client().await;
        let models = client
            .list_models(ListModelsRequest {})
            .await
            .unwrap()
            .into_inner()
            .models;
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["lstm-nade", "rwkv-nade"]);
        for model in &models {
            assert_eq!(model.head, "nade");
            assert!(model.metrics["test_nll_per_frame"] < 2.31, "{model:?}");
            let card = proto::card::ModelCard::read(&shipped.join(&model.name)).unwrap();
            assert_eq!(card.source.sha256.len(), 64);
            assert!(card.recipe.is_some());
            let frames = generate(&mut client, request(&model.name, 64, 9)).await;
            let notes: usize = frames.iter().map(Vec::len).sum();
            assert!(notes > 32, "{}: {notes} notes in 64 frames", model.name);
        }
        server.stop().await;
    });
}

#[test]
fn shutdown_lets_running_generations_finish() {
    runtime().block_on(async {
        let server = Running::start(Limits::default()).await;
        let mut client = server.client().await;
        let mut r = request("lstm", 2_000, 5);
        r.chunk_frames = 1;
        let mut stream = client.generate(r).await.unwrap().into_inner();
        stream.next().await.unwrap().unwrap();
        let stopping = tokio::spawn(server.stop());
        let mut frames = 1;
        let mut summary = false;
        while let Some(message) = stream.next().await {
            match message.unwrap().event.unwrap() {
                generate_response::Event::Chunk(c) => frames += c.frames.len(),
                generate_response::Event::Summary(_) => summary = true,
            }
        }
        assert_eq!(frames, 2_000);
        assert!(summary);
        stopping.await.unwrap();
    });
}

/// SIGTERM (as a process manager sends it) stops the server only after its running generation
/// has finished. The handler is the real one `serve` installs; the signal goes to this test
/// process, which that handler keeps alive.
#[test]
fn sigterm_drains_and_stops_the_server() {
    runtime().block_on(async {
        let server =
            Running::start_until(Limits::default(), serve::server::shutdown_signal()).await;
        let mut client = server.client().await;
        let mut r = request("rwkv", 1_500, 6);
        r.chunk_frames = 1;
        let mut stream = client.generate(r).await.unwrap().into_inner();
        stream.next().await.unwrap().unwrap();
        // SAFETY: kill(2) on our own process id with a signal whose handler is installed.
        assert_eq!(
            unsafe { libc::kill(std::process::id() as i32, libc::SIGTERM) },
            0
        );
        let mut frames = 1;
        while let Some(message) = stream.next().await {
            if let generate_response::Event::Chunk(c) = message.unwrap().event.unwrap() {
                frames += c.frames.len();
            }
        }
        assert_eq!(frames, 1_500, "the running generation finished");
        // The server has stopped taking calls and ends.
        tokio::time::timeout(Duration::from_secs(10), server.task)
            .await
            .expect("the server stops after draining")
            .unwrap();
        assert!(
            ComposerClient::connect(format!("http://{}", server.addr))
                .await
                .is_err()
        );
    });
}

/// Whether this machine has an NVIDIA GPU (then scripts/env.sh installs onnxruntime-gpu).
fn has_gpu() -> bool {
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `--device cuda` without a usable CUDA provider is a clear error, not a silent CPU server;
/// `--device auto` then falls back to CPU and says so.
#[test]
fn device_choice_is_explicit() {
    models();
    let config = |device| ServerConfig {
        device,
        ..ServerConfig::cpu(models().to_owned())
    };
    let auto = Server::load(config(Device::Auto)).unwrap();
    let cuda = Server::load(config(Device::Cuda));
    if has_gpu() {
        eprintln!("GPU present: expecting the CUDA provider");
        assert!(
            auto.models()
                .iter()
                .all(|(_, _, provider)| *provider == "CUDA")
        );
        let cuda = cuda.unwrap();
        assert!(
            cuda.models()
                .iter()
                .all(|(_, _, provider)| *provider == "CUDA")
        );
    } else {
        assert!(
            auto.models()
                .iter()
                .all(|(_, _, provider)| *provider == "CPU")
        );
        let error = cuda
            .err()
            .expect("--device cuda fails without CUDA")
            .to_string();
        assert!(
            error.contains("--device cuda") && error.contains("CUDA"),
            "{error}"
        );
    }
}
