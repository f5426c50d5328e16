//! A bounded soak test of the real `serve` binary on 127.0.0.1, over both protocols
//! (`pianoroll.v1` Generate and the Open Inference Protocol's ModelInfer):
//!
//! - waves of 64 concurrent clients against a server that runs at most 48 generations;
//! - a third of the clients cancel mid-call, about one in seven sends a malformed request;
//! - every completed piece equals the same request run alone, every refused or malformed one
//!   has the status it should, and nothing else happens;
//! - after the waves no generation slot is held (`pianoroll_active_generations` is 0) and the
//!   resident memory of the second half stays near the first half's;
//! - a last wave of long streams is running when SIGTERM arrives: each finishes intact, then the
//!   process exits 0.
//!
//! CI runs a short form. `PIANOROLL_SOAK_SECONDS` (default 8) and `PIANOROLL_SOAK_STREAMS`
//! (default 192) make it longer; BENCHMARKS.md records a one-minute run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::inference::model_infer_request::InferInputTensor;
use proto::inference::{InferTensorContents, ModelInferRequest};
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::generate_request::{Melody, Primer};
use proto::pianoroll_v1::{GenerateRequest, generate_response};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const WAVE: usize = 64;
const MAX_CONCURRENT: usize = 48;
const MAX_FRAMES: u32 = 2_000;

/// The generated frames of a piece, as MIDI pitches.
type Frames = Vec<Vec<u32>>;

/// The server process, its addresses and what it logged.
struct ServeProcess {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
    /// Log lines at WARN or ERROR.
    complaints: Arc<Mutex<Vec<String>>>,
}

fn start_server() -> ServeProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_serve"))
        .env("PIANOROLL_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .args(["--addr", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--max-concurrent", &MAX_CONCURRENT.to_string()])
        .args(["--max-frames", &MAX_FRAMES.to_string()])
        .args(["--drain-seconds", "30", "--models"])
        .arg(pianoroll_tests::repo_root().join("models"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addresses, found) = std::sync::mpsc::channel();
    let complaints = Arc::new(Mutex::new(Vec::new()));
    let logged = complaints.clone();
    let stderr = child.stderr.take().unwrap();
    // Reads the log to its end, so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            let message = entry["fields"]["message"].as_str().unwrap_or("").to_owned();
            let address = |prefix: &str| {
                message
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.split(['/', ' ']).next())
                    .map(|a| a.parse::<SocketAddr>().unwrap())
            };
            if let Some(a) = address("metrics on http://") {
                addresses.send(("metrics", a)).unwrap();
            }
            if let Some(a) = address("listening on ") {
                addresses.send(("grpc", a)).unwrap();
            }
            if entry["level"] != "INFO" {
                logged.lock().unwrap().push(line);
            }
        }
    });
    let mut seen = HashMap::new();
    while seen.len() < 2 {
        let (what, addr) = found
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens");
        seen.insert(what, addr);
    }
    ServeProcess {
        child,
        grpc: seen["grpc"],
        metrics: seen["metrics"],
        complaints,
    }
}

/// The server's resident memory, bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn active_generations(metrics: SocketAddr) -> f64 {
    let (_, text) = pianoroll_tests::http_get(metrics, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("pianoroll_active_generations "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The distinct requests clients make: both models, several seeds, lengths and temperatures,
/// some with a MIDI primer, some harmonising it as a melody.
fn kinds(primer: &[u8], long: bool) -> Vec<GenerateRequest> {
    (0..if long { 4 } else { 12 })
        .map(|i: u32| GenerateRequest {
            model: ["lstm-nade", "rwkv-nade"][i as usize % 2].to_owned(),
            frames: if long { 300 } else { 24 + (i * 13) % 72 },
            temperature: Some([1.0, 0.8, 1.2][i as usize % 3]),
            seed: 100 + u64::from(i),
            primer: (i % 4 == 3).then(|| Primer::PrimerMidi(primer.to_vec())),
            melody: (i % 4 == 1).then(|| Melody::MelodyMidi(primer.to_vec())),
            chunk_frames: 8,
            ..Default::default()
        })
        .collect()
}

async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// All frames of a Generate stream; with `cancel_after`, stop after that many messages.
async fn generate(
    channel: Channel,
    request: GenerateRequest,
    cancel_after: Option<usize>,
) -> Result<Frames, tonic::Status> {
    let mut stream = ComposerClient::new(channel)
        .generate(request)
        .await?
        .into_inner();
    let mut frames = Vec::new();
    let mut messages = 0;
    while let Some(message) = stream.next().await {
        if let generate_response::Event::Chunk(chunk) = message?.event.unwrap() {
            frames.extend(chunk.frames.into_iter().map(|f| f.pitches));
        }
        messages += 1;
        if cancel_after == Some(messages) {
            break;
        }
    }
    Ok(frames)
}

fn scalar(name: &str, datatype: &str, contents: InferTensorContents) -> InferInputTensor {
    InferInputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape: vec![1],
        parameters: HashMap::new(),
        contents: Some(contents),
    }
}

/// The request as an Open Inference Protocol call (typed contents).
fn infer_request(request: &GenerateRequest) -> ModelInferRequest {
    let mut inputs = vec![
        scalar(
            "frames",
            "INT32",
            InferTensorContents {
                int_contents: vec![request.frames as i32],
                ..Default::default()
            },
        ),
        scalar(
            "seed",
            "UINT64",
            InferTensorContents {
                uint64_contents: vec![request.seed],
                ..Default::default()
            },
        ),
        scalar(
            "temperature",
            "FP32",
            InferTensorContents {
                fp32_contents: vec![request.temperature.unwrap_or(1.0)],
                ..Default::default()
            },
        ),
    ];
    if let Some(Primer::PrimerMidi(midi)) = &request.primer {
        inputs.push(scalar(
            "primer_midi",
            "BYTES",
            InferTensorContents {
                bytes_contents: vec![midi.clone()],
                ..Default::default()
            },
        ));
    }
    if let Some(Melody::MelodyMidi(midi)) = &request.melody {
        inputs.push(scalar(
            "melody_midi",
            "BYTES",
            InferTensorContents {
                bytes_contents: vec![midi.clone()],
                ..Default::default()
            },
        ));
    }
    ModelInferRequest {
        model_name: request.model.clone(),
        inputs,
        ..Default::default()
    }
}

/// The generated frames of a ModelInfer call, from its `roll` output.
async fn infer(channel: Channel, request: ModelInferRequest) -> Result<Frames, tonic::Status> {
    let response = GrpcInferenceServiceClient::new(channel)
        .model_infer(request)
        .await?
        .into_inner();
    let roll_index = response
        .outputs
        .iter()
        .position(|o| o.name == "roll")
        .unwrap();
    let keys = response.outputs[roll_index].shape[1] as usize;
    let roll = &response.raw_output_contents[roll_index];
    Ok(roll
        .chunks(keys)
        .map(|frame| {
            (0..keys)
                .filter(|&k| frame[k] == 1)
                .map(|k| 21 + k as u32)
                .collect()
        })
        .collect())
}

/// What one client did.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Outcome {
    Completed,
    Cancelled,
    Refused,
    Malformed,
}

/// Client `i` of the soak: completes, cancels or misbehaves, over one protocol or the other;
/// panics on anything it should not see.
async fn client(
    i: usize,
    addr: SocketAddr,
    kinds: Arc<Vec<GenerateRequest>>,
    alone: Arc<Vec<Frames>>,
) -> Outcome {
    let channel = connect(addr).await;
    let kind = i % kinds.len();
    let request = kinds[kind].clone();
    let over_v2 = (i / 3) % 2 == 1;
    if i % 7 == 3 {
        let (result, expected): (Result<Frames, tonic::Status>, Code) = match (i / 7) % 5 {
            0 => {
                let r = GenerateRequest {
                    model: "no-such-model".to_owned(),
                    ..request
                };
                (generate(channel, r, None).await, Code::NotFound)
            }
            1 => {
                let r = GenerateRequest {
                    temperature: Some(f32::NAN),
                    ..request
                };
                (generate(channel, r, None).await, Code::InvalidArgument)
            }
            2 => {
                let r = GenerateRequest {
                    frames: MAX_FRAMES + 1,
                    ..request
                };
                (generate(channel, r, None).await, Code::ResourceExhausted)
            }
            3 => {
                let mut r = infer_request(&request);
                r.inputs[0].datatype = "FP32".to_owned();
                (infer(channel, r).await, Code::InvalidArgument)
            }
            _ => {
                let r = GenerateRequest {
                    primer: Some(Primer::PrimerMidi(b"MThd not really".to_vec())),
                    ..request
                };
                (
                    infer(channel, infer_request(&r)).await,
                    Code::InvalidArgument,
                )
            }
        };
        let status = result.expect_err("a malformed request is refused");
        assert_eq!(status.code(), expected, "client {i}: {status:?}");
        return Outcome::Malformed;
    }
    let cancel = i % 3 == 1;
    let result = match (over_v2, cancel) {
        (false, false) => generate(channel, request, None).await,
        (false, true) => generate(channel, request, Some(1))
            .await
            .map(|_| Vec::new()),
        (true, false) => infer(channel, infer_request(&request)).await,
        (true, true) => {
            // Gives up on the call before the piece can be finished.
            let call = infer(channel, infer_request(&request));
            match tokio::time::timeout(Duration::from_millis(15), call).await {
                Ok(result) => result.map(|_| Vec::new()),
                Err(_) => Ok(Vec::new()),
            }
        }
    };
    match result {
        Ok(_) if cancel => Outcome::Cancelled,
        Ok(frames) => {
            assert_eq!(
                frames, alone[kind],
                "client {i} (kind {kind}, v2 {over_v2}): the piece differs from the request run alone"
            );
            Outcome::Completed
        }
        Err(status) if status.code() == Code::ResourceExhausted => Outcome::Refused,
        Err(status) => panic!("client {i}: unexpected {status:?}"),
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}={v}: a number"))
    })
}

#[test]
fn soak_both_protocols_with_cancels_bad_requests_and_sigterm() {
    let seconds = env_number("PIANOROLL_SOAK_SECONDS", 8);
    let streams = env_number("PIANOROLL_SOAK_STREAMS", 192).max(WAVE);
    let waves = streams.div_ceil(WAVE);
    let mut server = start_server();
    let pid = server.child.id();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let primer =
        std::fs::read(pianoroll_tests::nottingham().join("test/ashover_simple_chords_11.mid"))
            .unwrap();
    runtime.block_on(async {
        let addr = server.grpc;
        let started = Instant::now();
        // Each distinct request, run alone.
        let long = kinds(&primer, true);
        let kinds = Arc::new(kinds(&primer, false));
        let mut alone = Vec::new();
        for request in kinds.iter().chain(&long) {
            alone.push(
                generate(connect(addr).await, request.clone(), None)
                    .await
                    .unwrap(),
            );
        }
        let (alone, alone_long) = {
            let long_part = alone.split_off(kinds.len());
            (Arc::new(alone), long_part)
        };
        let baseline = resident_bytes(pid);

        // Resident memory, sampled through the waves.
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sampling = {
            let samples = samples.clone();
            tokio::spawn(async move {
                loop {
                    samples
                        .lock()
                        .unwrap()
                        .push((Instant::now(), resident_bytes(pid)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let load_started = Instant::now();
        let wave_every = Duration::from_secs_f64(seconds as f64 / waves as f64);
        let mut outcomes: HashMap<Outcome, usize> = HashMap::new();
        for wave in 0..waves {
            let wave_start = Instant::now();
            let clients: Vec<_> = (0..WAVE)
                .map(|j| tokio::spawn(client(wave * WAVE + j, addr, kinds.clone(), alone.clone())))
                .collect();
            for c in clients {
                *outcomes.entry(c.await.unwrap()).or_default() += 1;
            }
            if let Some(rest) = wave_every.checked_sub(wave_start.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        let load_seconds = load_started.elapsed().as_secs_f64();
        sampling.abort();
        let samples = samples.lock().unwrap().clone();
        let half = load_started + (Instant::now() - load_started) / 2;
        let peak = |first: bool| {
            samples
                .iter()
                .filter(|(t, _)| (*t < half) == first)
                .map(|(_, b)| *b)
                .max()
                .unwrap_or(0)
        };
        let (first_half, second_half) = (peak(true), peak(false));

        // No slot is held once the clients are gone (cancelled calls included).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let active = active_generations(server.metrics);
            if active == 0.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{active} generations still held a slot"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The last wave: long streams, running when SIGTERM arrives.
        let mut running = Vec::new();
        for (i, request) in long.iter().cycle().take(16).enumerate() {
            let mut stream = ComposerClient::new(connect(addr).await)
                .generate(request.clone())
                .await
                .unwrap()
                .into_inner();
            let first = stream.next().await.unwrap().unwrap();
            running.push((i % long.len(), first, stream));
        }
        // SAFETY: kill(2) on the child's process id.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
        let sigterm = Instant::now();
        for (kind, first, mut stream) in running {
            let mut frames: Frames = Vec::new();
            let mut messages = vec![Ok(first)];
            while let Some(message) = stream.next().await {
                messages.push(message);
            }
            for message in messages {
                if let generate_response::Event::Chunk(chunk) = message.unwrap().event.unwrap() {
                    frames.extend(chunk.frames.into_iter().map(|f| f.pitches));
                }
            }
            assert_eq!(
                frames, alone_long[kind],
                "a stream running at SIGTERM finished intact"
            );
        }
        let status = wait_for_exit(&mut server.child, Duration::from_secs(30));
        assert!(
            status.success(),
            "the server exits 0 after draining: {status}"
        );
        let drained = sigterm.elapsed();

        let count = |o| outcomes.get(&o).copied().unwrap_or(0);
        let total = waves * WAVE;
        eprintln!(
            "soak: {total} clients in {waves} waves of {WAVE} over {load_seconds:.1} s \
             ({:.1} s in all with the references): {} completed and equal to the lone runs, \
             {} cancelled, {} refused (RESOURCE_EXHAUSTED at {MAX_CONCURRENT} running), \
             {} malformed with the right status; resident memory {:.0} MB after the \
             references, peaks {:.0} / {:.0} MB in the first / second half; SIGTERM with 16 \
             streams running: all finished, exit 0 after {:.2} s",
            started.elapsed().as_secs_f64(),
            count(Outcome::Completed),
            count(Outcome::Cancelled),
            count(Outcome::Refused),
            count(Outcome::Malformed),
            baseline as f64 / 1e6,
            first_half as f64 / 1e6,
            second_half as f64 / 1e6,
            drained.as_secs_f64(),
        );
        assert!(count(Outcome::Completed) > total / 4, "{outcomes:?}");
        assert!(
            count(Outcome::Cancelled) > 0 && count(Outcome::Malformed) > 0,
            "{outcomes:?}"
        );
        assert!(
            second_half <= first_half + first_half / 4 + (32 << 20),
            "resident memory grew: {first_half} then {second_half} bytes"
        );
    });
    let complaints = server.complaints.lock().unwrap().clone();
    assert!(
        complaints.iter().all(|l| !l.contains("\"ERROR\"")),
        "the server logged errors:\n{}",
        complaints.join("\n")
    );
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
