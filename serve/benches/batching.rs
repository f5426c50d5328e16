//! What continuous batching buys: frames/s and per-frame latency (p50/p99) for 1, 8 and 64
//! concurrent `Generate` streams against a real server on 127.0.0.1, next to a naive loop that
//! makes one ONNX Runtime call per request per frame (same model, same ONNX Runtime, no gRPC).
//!
//! `cargo bench -p serve --bench batching -- MODELS_DIR` (default `out/models`, which the main
//! job writes; a relative folder is looked for from the working folder, then from the
//! repository root, since cargo runs benchmarks in the package's folder); `scripts/bench.sh`
//! also exports full-size models to measure. Every model folder in MODELS_DIR is measured.
//! Figures go to BENCHMARKS.md.
//!
//! Environment: `BENCH_DEVICE` (`cpu`, the default, or `cuda`: the server's provider and the
//! naive loop's), `BENCH_STREAMS` (default `1,8,64`), `BENCH_NAIVE_UP_TO` (the naive loop runs
//! only up to this many streams; default 64), `BENCH_THREADS` (ONNX Runtime threads per model;
//! default: the server's default, [`serve::server::default_threads`]), `BENCH_STEP` (the
//! server's `--step`: `auto`, the default, `direct` or `bucketed`), `BENCH_BATCH_ROWS` (its
//! `--batch-rows`) and `BENCH_CUDA_GRAPHS` (`0` turns them off).

use std::path::PathBuf;
use std::time::Instant;

use proto::card::ModelCard;
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{GenerateRequest, generate_response};
use proto::sampling::Uniforms;
use serve::runtime::{Device, session};
use serve::server::{Server, ServerConfig};
use serve::step::{StepMode, StepOptions};
use tokio_stream::StreamExt;

const FRAMES: u32 = 1024;

/// The settings from the environment (see the top of the file).
struct Settings {
    device: Device,
    streams: Vec<usize>,
    naive_up_to: usize,
    /// ONNX Runtime threads per model (None: the server's default).
    threads: Option<usize>,
    step: StepOptions,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok();
        let device = match var("BENCH_DEVICE").as_deref() {
            None | Some("cpu") => Device::Cpu,
            Some("cuda") => Device::Cuda,
            Some(other) => panic!("BENCH_DEVICE={other}: cpu or cuda"),
        };
        let streams = var("BENCH_STREAMS")
            .unwrap_or_else(|| "1,8,64".to_owned())
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("BENCH_STREAMS: numbers separated by commas")
            })
            .collect();
        let naive_up_to = var("BENCH_NAIVE_UP_TO")
            .map_or(64, |n| n.parse().expect("BENCH_NAIVE_UP_TO: a number"));
        let threads = var("BENCH_THREADS").map(|n| n.parse().expect("BENCH_THREADS: a number"));
        let step = StepOptions {
            mode: match var("BENCH_STEP").as_deref() {
                None | Some("auto") => StepMode::Auto,
                Some("direct") => StepMode::Direct,
                Some("bucketed") => StepMode::Bucketed,
                Some(other) => panic!("BENCH_STEP={other}: auto, direct or bucketed"),
            },
            batch_rows: var("BENCH_BATCH_ROWS")
                .map(|n| n.parse().expect("BENCH_BATCH_ROWS: a number")),
            cuda_graphs: var("BENCH_CUDA_GRAPHS").as_deref() != Some("0"),
        };
        Settings {
            device,
            streams,
            naive_up_to,
            threads,
            step,
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Figures {
    frames_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn print(label: &str, streams: usize, f: &Figures) {
    println!(
        "  {label:<8} {streams:>3} streams: {:>8.0} frames/s   per-frame latency p50 {:>7.3} ms   p99 {:>7.3} ms",
        f.frames_per_s, f.p50_ms, f.p99_ms
    );
}

/// `streams` concurrent Generate calls of FRAMES frames (chunks of 16, the default). Throughput
/// is measured at the clients; per-frame latency is the duration of the server's batch steps
/// during the run (each step gives every stream its next frame).
async fn served(
    addr: std::net::SocketAddr,
    model: &str,
    streams: usize,
    stats: &serve::metrics::BatchStats,
) -> Figures {
    stats.take_steps();
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let model = model.to_owned();
            tokio::spawn(async move {
                let mut client = ComposerClient::connect(format!("http://{addr}"))
                    .await
                    .unwrap();
                let request = GenerateRequest {
                    model,
                    frames: FRAMES,
                    temperature: None,
                    seed: i as u64,
                    ..Default::default()
                };
                let mut stream = client.generate(request).await.unwrap().into_inner();
                let mut frames = 0;
                while let Some(message) = stream.next().await {
                    if let Some(generate_response::Event::Chunk(c)) = message.unwrap().event {
                        frames += c.frames.len();
                    }
                }
                assert_eq!(frames, FRAMES as usize);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut gaps: Vec<f64> = stats.take_steps().iter().map(|(_, s)| s * 1e3).collect();
    gaps.sort_by(f64::total_cmp);
    Figures {
        frames_per_s: (streams * FRAMES as usize) as f64 / seconds,
        p50_ms: percentile(&gaps, 0.5),
        p99_ms: percentile(&gaps, 0.99),
    }
}

/// A model folder's card and a plain session of its graph (no CUDA graphs: one call at a time).
fn card_and_session(
    folder: &std::path::Path,
    device: Device,
    threads: usize,
) -> (ModelCard, ort::session::Session) {
    let card = ModelCard::read(folder).unwrap();
    let environment = serve::runtime::init(None).unwrap();
    let (session, _) = session(
        environment,
        &folder.join("model.onnx"),
        device,
        threads,
        false,
    )
    .unwrap();
    (card, session)
}

/// The naive server loop: each round, one session call per request (batch 1); a request's
/// next frame comes once per round, so the round's duration is its per-frame latency.
fn naive(folder: &std::path::Path, streams: usize, device: Device, threads: usize) -> Figures {
    let (card, mut session) = card_and_session(folder, device, threads);
    let mut states: Vec<Vec<Vec<f32>>> = (0..streams)
        .map(|_| serve::step::initial_state(&card, 1))
        .collect();
    let mut frames = vec![vec![0f32; 88]; streams];
    let mut uniforms: Vec<Uniforms> = (0..streams as u64).map(Uniforms::new).collect();
    let mut uniform = vec![0f32; 88];
    let next_frame = &card.sampling().unwrap().next_frame_output;
    let mut rounds = Vec::new();
    let started = Instant::now();
    for _ in 0..FRAMES {
        let round = Instant::now();
        for ((state, frame), uniforms) in states.iter_mut().zip(&mut frames).zip(&mut uniforms) {
            uniforms.fill(&mut uniform);
            let outputs = session
                .run(
                    serve::step::step_inputs(
                        &card,
                        1,
                        frame.to_vec(),
                        uniform.clone(),
                        vec![1.0],
                        state.clone(),
                    )
                    .unwrap(),
                )
                .unwrap();
            for (spec, values) in card.states.iter().zip(state.iter_mut()) {
                let (_, data) = outputs[spec.output.as_str()]
                    .try_extract_tensor::<f32>()
                    .unwrap();
                values.copy_from_slice(data);
            }
            let (_, sampled) = outputs[next_frame.as_str()]
                .try_extract_tensor::<f32>()
                .unwrap();
            frame.copy_from_slice(sampled);
        }
        rounds.push(round.elapsed().as_secs_f64() * 1e3);
    }
    let seconds = started.elapsed().as_secs_f64();
    rounds.sort_by(f64::total_cmp);
    Figures {
        frames_per_s: (streams * FRAMES as usize) as f64 / seconds,
        p50_ms: percentile(&rounds, 0.5),
        p99_ms: percentile(&rounds, 0.99),
    }
}

/// Whether a row's logits depend on the rest of its batch: 8 steps of 64 random rows run as one
/// batch and each row alone ([`serve::invariance`], which the server runs at load on 8 rows);
/// with `padded_to` (one shape for every batch), each row alone padded to that shape.
fn row_independence(
    folder: &std::path::Path,
    device: Device,
    threads: usize,
    padded_to: Option<usize>,
) -> serve::invariance::BatchInvariance {
    let (card, mut session) = card_and_session(folder, device, threads);
    serve::invariance::measure(&mut session, &card, 64, 8, padded_to).unwrap()
}

fn main() {
    let asked = PathBuf::from(
        std::env::args()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .unwrap_or_else(|| "out/models".to_owned()),
    );
    // From the working folder first (a copied bench binary runs anywhere); cargo runs
    // benchmarks in the package's folder, so then from the repository root, where it was built.
    let built_in = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let models = [asked.clone(), built_in.join(&asked)]
        .into_iter()
        .find(|folder| folder.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "{}: no model folders here or in {} (run scripts/main.sh first, or give a folder)",
                asked.display(),
                built_in.display()
            )
        });
    let settings = Settings::from_env();
    let models_count = serve::registry::model_folders(&models).map_or(1, |m| m.len());
    let threads = settings
        .threads
        .unwrap_or_else(|| serve::server::default_threads(settings.device, models_count));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = ServerConfig {
        device: settings.device,
        threads,
        step: settings.step,
        ..ServerConfig::cpu(models.clone())
    };
    // One shape for every batch must hold the largest.
    if let Some(rows) = settings.step.batch_rows {
        config.limits.max_concurrent = config.limits.max_concurrent.min(rows);
    }
    let server = Server::load(config).unwrap();
    let names = server.models();
    let stats = server.batch_stats();
    let listener = runtime
        .block_on(serve::server::bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run(listener, async {
        let _ = stopped.await;
    }));
    println!(
        "{FRAMES} frames per stream, {threads} ONNX Runtime threads per model, {} cores, \
         step {:?} (batch rows {:?}, CUDA graphs {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.step.mode,
        settings.step.batch_rows,
        settings.step.cuda_graphs
    );
    for (name, kind, provider) in &names {
        let card = ModelCard::read(&models.join(name)).unwrap();
        println!(
            "{name} ({kind}, {} head, {} parameters) on {provider}:",
            card.head, card.metrics.parameters
        );
        let padded_to = settings
            .step
            .batch_rows
            .filter(|_| settings.step.mode != StepMode::Direct);
        let found = row_independence(&models.join(name), settings.device, threads, padded_to);
        println!(
            "  rows alone vs in a batch of 64{}: {} of {} logits differ in any bit \
             (largest difference {:e})",
            padded_to.map_or(String::new(), |rows| format!(
                ", both padded to {rows} rows"
            )),
            found.differing,
            found.compared,
            found.largest_difference
        );
        // Warm up the session and the connections.
        let stats = &stats[name];
        runtime.block_on(served(addr, name, 2, stats));
        for &streams in &settings.streams {
            let batched = runtime.block_on(served(addr, name, streams, stats));
            print("batched", streams, &batched);
            if streams > settings.naive_up_to {
                continue;
            }
            let looped = naive(&models.join(name), streams, settings.device, threads);
            print("naive", streams, &looped);
            println!(
                "  {:>21}  batching: {:.1}x the frames/s",
                "",
                batched.frames_per_s / looped.frames_per_s
            );
        }
    }
    let _ = stop.send(());
    runtime.block_on(serving).unwrap().unwrap();
}
