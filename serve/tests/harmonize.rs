//! Harmonising a melody (issue 25): the melody's top line stays the top line of every frame
//! it sounds in, through the command line (`serve harmonize`), gRPC (`Harmonize`, and a melody
//! in `Generate`), v2's `melody_midi` input and the page's API; the piece keeps the melody's key
//! and meter; the same seed gives the same piece; bad requests are refused naming the field.
//!
//! The melody is the Nottingham test tune ashover_simple_chords_11 (D major, 6/8), whose top
//! line is its tune over chords; the shipped `lstm-nade` writes the rest.

use std::path::Path;

use pianoroll::Frame;
use pianoroll::melody::{melody_constraints, top_line};
use proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::inference::model_infer_request::InferInputTensor;
use proto::inference::{InferTensorContents, ModelInferRequest};
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{
    ComposeRequest, Frame as WireFrame, Frames, GenerateRequest, generate_request,
    generate_response,
};
use serve::server::ServerConfig;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

mod common;
use common::{Running, as_written, d_major_jig, serve_binary};

const MODEL: &str = "lstm-nade";

/// The melody file's frames as written.
fn melody_frames() -> Vec<Frame> {
    let bytes = std::fs::read(d_major_jig()).unwrap();
    pianoroll::read_midi(&bytes, &as_written())
        .unwrap()
        .roll
        .frames()
        .to_vec()
}

/// Every frame of `piece` keeps the constraint that `melody`'s top line sets it: the melody's
/// note sounds and nothing above it, and while it rests nothing at or above its last note; and
/// the model wrote something under the tune (it is not the bare melody).
fn assert_melody_on_top(piece: &[Frame], melody: &[Frame], what: &str) {
    let line = top_line(melody);
    assert!(piece.len() >= line.len(), "{what}: {} frames", piece.len());
    for (t, (frame, constraint)) in piece.iter().zip(melody_constraints(&line)).enumerate() {
        assert!(
            constraint.allows(*frame),
            "{what}: frame {t} is {frame:?}, melody note {:?}",
            line[t]
        );
        if let Some(note) = line[t] {
            assert_eq!(frame.highest_key(), Some(note), "{what}: frame {t}");
        }
    }
    let accompanied = piece.iter().filter(|f| f.len() >= 2).count();
    assert!(
        accompanied * 2 > line.len(),
        "{what}: only {accompanied} of {} frames have notes under the tune",
        line.len()
    );
}

/// A written piece's frames as written, checked to be in D major and 6/8 like the melody.
fn written_in_d_six_eight(midi: &[u8], what: &str) -> Vec<Frame> {
    let piece = pianoroll::read_midi(midi, &as_written()).unwrap();
    assert_eq!(piece.key.unwrap().name(), "D major", "{what}: key");
    assert_eq!(
        piece.meter.map(|m| m.to_string()).as_deref(),
        Some("6/8"),
        "{what}: meter"
    );
    piece.roll.frames().to_vec()
}

fn melody_request(seed: u64) -> GenerateRequest {
    GenerateRequest {
        model: MODEL.to_owned(),
        seed,
        melody: Some(generate_request::Melody::MelodyMidi(
            std::fs::read(d_major_jig()).unwrap(),
        )),
        ..Default::default()
    }
}

async fn harmonize(
    client: &mut ComposerClient<Channel>,
    generation: GenerateRequest,
) -> Result<proto::pianoroll_v1::ComposeResponse, tonic::Status> {
    client
        .harmonize(ComposeRequest {
            generation: Some(generation),
            png: false,
            audio: String::new(),
            count: 0,
        })
        .await
        .map(|r| r.into_inner())
}

/// `serve harmonize --melody` writes the melody harmonised in its key and meter, its tune on
/// top in every frame, as long as the melody; the same seed writes the same bytes and another
/// seed another accompaniment; a missing melody file is refused naming the flag.
#[test]
fn the_command_line_harmonises_a_melody() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let addr = server.addr.to_string();
        let out = dir.path().to_owned();
        let outputs = tokio::task::spawn_blocking(move || {
            let run = |seed: &str, name: &str, melody: &Path| {
                std::process::Command::new(serve_binary())
                    .arg("harmonize")
                    .args(["--addr", &addr, "--model", MODEL, "--seed", seed])
                    .arg("--melody")
                    .arg(melody)
                    .arg("-o")
                    .arg(out.join(name))
                    .output()
                    .unwrap()
            };
            [
                run("3", "a.mid", &d_major_jig()),
                run("3", "b.mid", &d_major_jig()),
                run("4", "c.mid", &d_major_jig()),
                run("3", "d.mid", &out.join("missing.mid")),
            ]
        })
        .await
        .unwrap();
        for (output, name) in outputs[..3].iter().zip(["a", "b", "c"]) {
            assert!(
                output.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&outputs[0].stdout);
        assert!(
            stdout.contains("harmonising the melody") && stdout.contains("D major, 6/8"),
            "{stdout}"
        );
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        let melody = melody_frames();
        let piece = written_in_d_six_eight(&read("a.mid"), "serve harmonize");
        assert_eq!(piece.len(), melody.len());
        assert_melody_on_top(&piece, &melody, "serve harmonize");
        assert_eq!(
            read("a.mid"),
            read("b.mid"),
            "the same seed, the same piece"
        );
        assert_ne!(
            read("a.mid"),
            read("c.mid"),
            "another seed, another accompaniment"
        );
        assert!(!outputs[3].status.success());
        let stderr = String::from_utf8_lossy(&outputs[3].stderr);
        assert!(stderr.contains("--melody"), "{stderr}");
        assert!(!dir.path().join("d.mid").exists());
        server.stop().await;
    });
}

/// gRPC: `Harmonize` with a MIDI melody and with melody frames keeps the tune on top; a melody
/// in `Generate` streams the frames `Harmonize` writes; frames past the melody's end are the
/// model's; a request without a melody, with a primer too, or with a silent melody is refused
/// naming the field.
#[test]
fn grpc_harmonises_and_refuses_what_it_cannot() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let mut client = ComposerClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let melody = melody_frames();

        let composed = harmonize(&mut client, melody_request(5)).await.unwrap();
        let summary = composed.summary.unwrap();
        assert_eq!(summary.generated_frames as usize, melody.len());
        assert_eq!(summary.primer_frames, 0);
        let piece = written_in_d_six_eight(&composed.midi, "Harmonize");
        assert_melody_on_top(&piece, &melody, "Harmonize");

        // The same melody streamed by Generate: the frames Harmonize wrote.
        let mut stream = client
            .generate(melody_request(5))
            .await
            .unwrap()
            .into_inner();
        let mut streamed = Vec::new();
        while let Some(message) = stream.next().await {
            if let generate_response::Event::Chunk(chunk) = message.unwrap().event.unwrap() {
                streamed.extend(
                    chunk
                        .frames
                        .iter()
                        .map(|f| Frame::from_pitches(f.pitches.iter().map(|&p| p as u8)).unwrap()),
                );
            }
        }
        assert_eq!(streamed, piece, "Generate with a melody streams the piece");

        // Melody frames (in the key the model works in, C): a scale line, then 8 more frames.
        let line: Vec<Frame> = [72u8, 74, 76, 77, 79, 79, 77, 76, 74, 72]
            .iter()
            .flat_map(|&p| [Frame::from_pitches([p]).unwrap(); 2])
            .collect();
        let wire = Frames {
            frames: line
                .iter()
                .map(|f| WireFrame {
                    pitches: f.pitches().map(u32::from).collect(),
                })
                .collect(),
        };
        let mut request = GenerateRequest {
            model: MODEL.to_owned(),
            frames: line.len() as u32 + 8,
            seed: 1,
            melody: Some(generate_request::Melody::MelodyFrames(wire.clone())),
            ..Default::default()
        };
        let longer = harmonize(&mut client, request.clone()).await.unwrap();
        let piece = pianoroll::read_midi(&longer.midi, &as_written())
            .unwrap()
            .roll
            .frames()
            .to_vec();
        assert_eq!(piece.len(), line.len() + 8);
        assert_melody_on_top(&piece, &line, "Harmonize, melody frames");

        // Refusals, each naming its field.
        let refusals = [
            (
                GenerateRequest {
                    melody: None,
                    ..request.clone()
                },
                "melody",
            ),
            (
                GenerateRequest {
                    primer: Some(generate_request::Primer::PrimerFrames(wire.clone())),
                    ..request.clone()
                },
                "primer",
            ),
            (
                GenerateRequest {
                    melody: Some(generate_request::Melody::MelodyFrames(Frames {
                        frames: vec![WireFrame::default(); 4],
                    })),
                    ..request.clone()
                },
                "melody",
            ),
            (
                GenerateRequest {
                    melody: Some(generate_request::Melody::MelodyMidi(b"not MIDI".to_vec())),
                    ..request.clone()
                },
                "melody_midi",
            ),
            (
                GenerateRequest {
                    melody: Some(generate_request::Melody::MelodyFrames(Frames {
                        frames: vec![WireFrame { pitches: vec![9] }],
                    })),
                    ..request.clone()
                },
                "melody_frames.frames[0]",
            ),
        ];
        for (bad, field) in refusals {
            let status = harmonize(&mut client, bad).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains(field), "{field}: {status:?}");
        }
        // The server still serves.
        request.seed = 2;
        assert!(harmonize(&mut client, request).await.is_ok());
        server.stop().await;
    });
}

/// v2's `melody_midi` input, without `frames`: a roll as long as the melody, its tune on top,
/// and a MIDI file in the melody's key and meter.
#[test]
fn v2_inference_harmonises_a_melody_midi_input() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let melody_input = InferInputTensor {
            name: "melody_midi".to_owned(),
            datatype: "BYTES".to_owned(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![std::fs::read(d_major_jig()).unwrap()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = client
            .model_infer(ModelInferRequest {
                model_name: MODEL.to_owned(),
                inputs: vec![melody_input],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let at = |name: &str| {
            response
                .outputs
                .iter()
                .position(|o| o.name == name)
                .unwrap()
        };
        let melody = melody_frames();
        let roll = &response.outputs[at("roll")];
        assert_eq!(roll.shape, [melody.len() as i64, 88]);
        let piece = written_in_d_six_eight(&response.raw_output_contents[at("midi")][4..], "v2");
        assert_melody_on_top(&piece, &melody, "ModelInfer melody_midi");
        server.stop().await;
    });
}

/// The page's API: `harmonize=true` takes the body as the melody; `frames=0` means the
/// melody's length.
#[test]
fn the_pages_api_harmonises_the_file_it_is_sent() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start_with_http(ServerConfig::cpu(common::shipped_models())).await;
        let page = server.page.unwrap();
        let body = std::fs::read(d_major_jig()).unwrap();
        let answer = tokio::task::spawn_blocking(move || {
            pianoroll_tests::http_request(
                page,
                "POST",
                &format!("/api/generate?model={MODEL}&frames=0&seed=2&harmonize=true"),
                &[],
                &body,
            )
        })
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.head);
        let text = String::from_utf8(answer.body).unwrap();
        let mut generated: Vec<Frame> = Vec::new();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let message: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(message.get("error").is_none(), "{line}");
            if let Some(frames) = message["frames"].as_array() {
                generated.extend(frames.iter().map(|f| {
                    Frame::from_pitches(
                        f.as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p.as_u64().unwrap() as u8),
                    )
                    .unwrap()
                }));
            }
        }
        let melody = melody_frames();
        assert_eq!(generated.len(), melody.len());
        assert_melody_on_top(&generated, &melody, "the page's API");
        server.stop().await;
    });
}
