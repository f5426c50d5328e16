//! A piece's key, meter and tempo from primer to output (issue 25): a D major 6/8 primer (the
//! Nottingham test tune ashover_simple_chords_11, a jig with a D major key signature, 6/8 and
//! 120 bpm) comes back in D with 6/8 through the command line, `Compose`, `Generate` and v2's
//! `ModelInfer`; the model continued it in C, as trained; the PNG's bar lines fall every bar of
//! 6/8 (6 eighth-note frames); without a primer the piece is C major, 4/4 unless asked; bad
//! keys and meters are refused naming the field or flag.

use std::path::Path;

use pianoroll::key::{KeySource, Mode};
use pianoroll::{Frame, RollSettings};
use proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::inference::model_infer_request::InferInputTensor;
use proto::inference::{InferTensorContents, ModelInferRequest};
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{
    ComposeRequest, ComposeResponse, Frame as WireFrame, Frames, GenerateRequest, generate_request,
    generate_response,
};
use serve::server::ServerConfig;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

mod common;
use common::{Running, as_written, d_major_jig, serve_binary};

const MODEL: &str = "lstm-nade";

fn request(frames: u32, seed: u64) -> GenerateRequest {
    GenerateRequest {
        model: MODEL.to_owned(),
        frames,
        seed,
        temperature: Some(0.9),
        ..Default::default()
    }
}

fn with_primer(mut r: GenerateRequest) -> GenerateRequest {
    r.primer = Some(generate_request::Primer::PrimerMidi(
        std::fs::read(d_major_jig()).unwrap(),
    ));
    r
}

async fn compose(client: &mut ComposerClient<Channel>, r: GenerateRequest) -> ComposeResponse {
    client
        .compose(ComposeRequest {
            generation: Some(r),
            png: true,
            audio: String::new(),
            count: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The streamed frames of a `Generate` call.
async fn generate(client: &mut ComposerClient<Channel>, r: GenerateRequest) -> Vec<Frame> {
    let mut stream = client.generate(r).await.unwrap().into_inner();
    let mut frames = Vec::new();
    while let Some(message) = stream.next().await {
        if let generate_response::Event::Chunk(chunk) = message.unwrap().event.unwrap() {
            frames.extend(
                chunk
                    .frames
                    .iter()
                    .map(|f| Frame::from_pitches(f.pitches.iter().map(|&p| p as u8)).unwrap()),
            );
        }
    }
    frames
}

/// A written piece checked to be D major (its key signature), 6/8, 120 bpm, and to start with
/// the primer's own notes; its roll as written.
fn assert_d_major_six_eight(midi: &[u8], primer_frames: usize, what: &str) -> Vec<Frame> {
    let piece = pianoroll::read_midi(midi, &as_written()).unwrap();
    let key = piece.key.unwrap();
    assert_eq!(key.name(), "D major", "{what}: key");
    assert_eq!(
        piece.key_source,
        KeySource::Signature,
        "{what}: a key signature"
    );
    assert_eq!(
        piece.meter.map(|m| m.to_string()).as_deref(),
        Some("6/8"),
        "{what}: time signature"
    );
    assert_eq!(piece.tempo_bpm, Some(120.0), "{what}: tempo");
    let original = pianoroll::read_midi(&std::fs::read(d_major_jig()).unwrap(), &as_written())
        .unwrap()
        .roll;
    assert_eq!(original.len(), primer_frames);
    assert_eq!(
        &piece.roll.frames()[..primer_frames],
        original.frames(),
        "{what}: the primer's notes at their own pitches"
    );
    piece.roll.frames().to_vec()
}

/// The frames (from 0) where a PNG of `frames` frames, 4 pixels each, draws a bar line.
fn bar_lines(png: &[u8], frames: usize) -> Vec<usize> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png.to_vec()))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let (width, height) = (info.width as usize, info.height as usize);
    let left = width - frames * 4;
    (0..frames)
        .filter(|t| {
            (0..height).any(|y| {
                let i = (y * width + left + t * 4) * 3;
                pixels[i..i + 3] == pianoroll::render::BAR_LINE
            })
        })
        .collect()
}

/// `Compose` and `Generate` with the D major 6/8 primer: the MIDI file carries D major, 6/8 and
/// 120 bpm with the primer's own notes; the streamed frames are the file's; they are the frames
/// the model writes after the primer moved to C, moved up a tone; the PNG has a bar line every
/// 6 frames.
#[test]
fn a_d_major_six_eight_primer_comes_back_in_d_and_six_eight() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let mut client = ComposerClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let r = with_primer(request(30, 11));
        let composed = compose(&mut client, r.clone()).await;
        let summary = composed.summary.unwrap();
        assert_eq!(
            (
                summary.key.as_str(),
                summary.meter.as_str(),
                summary.tempo_bpm
            ),
            ("D major", "6/8", 120.0)
        );
        let primer_frames = summary.primer_frames as usize;
        let written = assert_d_major_six_eight(&composed.midi, primer_frames, "Compose");

        // Generate streams the same frames, in D.
        let streamed = generate(&mut client, r).await;
        assert_eq!(streamed.len(), 30);
        // The file ends with the last sounding frame; the stream has every frame.
        let generated = &written[primer_frames..];
        assert_eq!(&streamed[..generated.len()], generated);

        // The model worked in C: the primer moved to C and given as frames (which are in the
        // key the model works in) gives the same frames a tone lower, in C.
        let in_c = pianoroll::read_midi(
            &std::fs::read(d_major_jig()).unwrap(),
            &RollSettings::benchmark(),
        )
        .unwrap();
        assert_eq!(in_c.transpose, -2);
        let mut from_c = request(30, 11);
        from_c.primer = Some(generate_request::Primer::PrimerFrames(Frames {
            frames: in_c
                .roll
                .frames()
                .iter()
                .map(|f| WireFrame {
                    pitches: f.pitches().map(u32::from).collect(),
                })
                .collect(),
        }));
        let in_c_frames = generate(&mut client, from_c.clone()).await;
        let moved: Vec<Frame> = in_c_frames.iter().map(|f| f.shifted(2)).collect();
        assert_eq!(streamed, moved, "the model's frames in C, moved up a tone");
        assert!(streamed.iter().any(|f| !f.is_empty()), "music, not silence");
        let plain = compose(&mut client, from_c).await.summary.unwrap();
        assert_eq!(
            (plain.key.as_str(), plain.meter.as_str()),
            ("C major", "4/4")
        );

        // Bar lines every bar of 6/8: 6 eighth-note frames.
        let total = primer_frames + 30;
        let lines = bar_lines(&composed.png, total);
        assert_eq!(lines, (0..total).step_by(6).collect::<Vec<_>>());

        server.stop().await;
    });
}

/// Without a primer: C major and 4/4, unless asked; an asked key moves the model's frames; bad
/// keys and meters are refused naming the field.
#[test]
fn without_a_primer_c_major_and_four_four_unless_asked() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let mut client = ComposerClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let plain = compose(&mut client, request(32, 5)).await;
        let piece = pianoroll::read_midi(&plain.midi, &as_written()).unwrap();
        assert_eq!(piece.key.unwrap().name(), "C major");
        assert_eq!(piece.key_source, KeySource::Signature);
        assert_eq!(piece.meter.unwrap().to_string(), "4/4");
        assert_eq!(bar_lines(&plain.png, 32)[..3], [0, 8, 16]);

        let mut asked = request(32, 5);
        asked.key = "D".to_owned();
        asked.meter = "6/8".to_owned();
        let d = compose(&mut client, asked.clone()).await;
        let summary = d.summary.unwrap();
        assert_eq!(
            (summary.key.as_str(), summary.meter.as_str()),
            ("D major", "6/8")
        );
        let piece_d = pianoroll::read_midi(&d.midi, &as_written()).unwrap();
        assert_eq!(piece_d.key.unwrap().name(), "D major");
        assert_eq!(piece_d.meter.unwrap().to_string(), "6/8");
        let c_frames = generate(&mut client, request(32, 5)).await;
        let d_frames = generate(&mut client, asked).await;
        assert_eq!(
            d_frames,
            c_frames.iter().map(|f| f.shifted(2)).collect::<Vec<_>>()
        );
        assert_eq!(bar_lines(&d.png, 32)[..3], [0, 6, 12]);

        let mut flat = request(8, 5);
        flat.key = "Bb".to_owned();
        let piece = compose(&mut client, flat).await;
        let key = pianoroll::read_midi(&piece.midi, &as_written())
            .unwrap()
            .key
            .unwrap();
        assert_eq!((key.tonic, key.mode), (10, Mode::Major));

        for (field, value, words) in [
            ("meter", "7/0", "power of two"),
            ("meter", "six-eight", "not a meter"),
            ("key", "H", "not a key"),
            // No primer: the frames are major, and transposing cannot make them minor.
            ("key", "Bbm", "is minor, but the model's frames are major"),
        ] {
            let mut bad = request(4, 1);
            match field {
                "meter" => bad.meter = value.to_owned(),
                _ => bad.key = value.to_owned(),
            }
            let status = client
                .compose(ComposeRequest {
                    generation: Some(bad),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(
                status.message().starts_with(&format!("{field}: "))
                    && status.message().contains(words),
                "{field} {value}: {}",
                status.message()
            );
        }
        server.stop().await;
    });
}

fn bytes_input(name: &str, value: &[u8]) -> InferInputTensor {
    InferInputTensor {
        name: name.to_owned(),
        datatype: "BYTES".to_owned(),
        shape: vec![1],
        contents: Some(InferTensorContents {
            bytes_contents: vec![value.to_vec()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// v2's `ModelInfer`: the primer's setting comes back in its `midi` output, and `key` and
/// `meter` inputs set a piece without a primer.
#[test]
fn v2_inference_carries_the_setting() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let frames = InferInputTensor {
            name: "frames".to_owned(),
            datatype: "INT32".to_owned(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                int_contents: vec![12],
                ..Default::default()
            }),
            ..Default::default()
        };
        let midi_of = |response: proto::inference::ModelInferResponse| {
            let at = response
                .outputs
                .iter()
                .position(|o| o.name == "midi")
                .unwrap();
            response.raw_output_contents[at][4..].to_vec()
        };
        let primer = std::fs::read(d_major_jig()).unwrap();
        let with_primer = client
            .model_infer(ModelInferRequest {
                model_name: MODEL.to_owned(),
                inputs: vec![frames.clone(), bytes_input("primer_midi", &primer)],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let primer_frames = pianoroll::read_midi(&primer, &as_written())
            .unwrap()
            .roll
            .len();
        assert_d_major_six_eight(&midi_of(with_primer), primer_frames, "ModelInfer");

        let asked = client
            .model_infer(ModelInferRequest {
                model_name: MODEL.to_owned(),
                inputs: vec![
                    frames.clone(),
                    bytes_input("key", b"G major"),
                    bytes_input("meter", b"3/4"),
                ],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let piece = pianoroll::read_midi(&midi_of(asked), &as_written()).unwrap();
        assert_eq!(piece.key.unwrap().name(), "G major");
        assert_eq!(piece.meter.unwrap().to_string(), "3/4");

        let refused = client
            .model_infer(ModelInferRequest {
                model_name: MODEL.to_owned(),
                inputs: vec![frames, bytes_input("meter", b"7/0")],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().contains("input meter"),
            "{}",
            refused.message()
        );
        server.stop().await;
    });
}

/// `serve generate --primer` with the D major 6/8 primer writes a MIDI file in D with 6/8 and a
/// PNG with a bar line every 6 frames; `--key` and `--meter` set a piece without a primer; a
/// bad `--meter` is refused by name.
#[test]
fn the_command_line_writes_the_primers_key_and_meter() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let addr = server.addr.to_string();
        let out = dir.path().to_owned();
        let primer = d_major_jig();
        let run = move |args: Vec<String>| {
            let addr = addr.clone();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(serve_binary())
                    .arg("generate")
                    .args(["--addr", &addr, "--model", MODEL])
                    .args(args)
                    .output()
                    .unwrap()
            })
        };
        let path = |name: &str| out.join(name).to_string_lossy().into_owned();
        let primed = run(vec![
            "--frames".into(),
            "20".into(),
            "--seed".into(),
            "3".into(),
            "--primer".into(),
            primer.to_string_lossy().into_owned(),
            "-o".into(),
            path("jig.mid"),
            "--png".into(),
            path("jig.png"),
        ])
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&primed.stdout);
        assert!(
            primed.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&primed.stderr)
        );
        assert!(stdout.contains("in D major, 6/8 at 120.0 bpm"), "{stdout}");
        let primer_frames = pianoroll::read_midi(&std::fs::read(&primer).unwrap(), &as_written())
            .unwrap()
            .roll
            .len();
        let midi = std::fs::read(path("jig.mid")).unwrap();
        assert_d_major_six_eight(&midi, primer_frames, "serve generate");
        let total = primer_frames + 20;
        assert_eq!(
            bar_lines(&std::fs::read(path("jig.png")).unwrap(), total),
            (0..total).step_by(6).collect::<Vec<_>>()
        );

        let asked = run(vec![
            "--frames".into(),
            "12".into(),
            "--key".into(),
            "D".into(),
            "--meter".into(),
            "6/8".into(),
            "-o".into(),
            path("asked.mid"),
        ])
        .await
        .unwrap();
        assert!(
            asked.status.success(),
            "{}",
            String::from_utf8_lossy(&asked.stderr)
        );
        let piece = pianoroll::read_midi(&std::fs::read(path("asked.mid")).unwrap(), &as_written())
            .unwrap();
        assert_eq!(piece.key.unwrap().name(), "D major");
        assert_eq!(piece.meter.unwrap().to_string(), "6/8");

        let bad = run(vec![
            "--meter".into(),
            "7/0".into(),
            "-o".into(),
            path("bad.mid"),
        ])
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success());
        assert!(
            stderr.contains("--meter") && stderr.contains("power of two"),
            "{stderr}"
        );
        assert!(!Path::new(&path("bad.mid")).exists());
        server.stop().await;
    });
}

/// The page's API: `/api/generate` sends the primer in its own key with the piece's setting
/// (D major, 6/8, 120 bpm, 6 frames a bar) before the frames; `/api/render` writes a roll with
/// the setting the page passes back; a bad meter is refused by name.
#[test]
fn the_pages_api_carries_the_setting() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start_with_http(ServerConfig::cpu(common::shipped_models())).await;
        let page = server.page.unwrap();
        let post = |path: String, body: Vec<u8>| {
            tokio::task::spawn_blocking(move || {
                pianoroll_tests::http_request(page, "POST", &path, &[], &body)
            })
        };
        let primer = std::fs::read(d_major_jig()).unwrap();
        let answer = post(
            format!("/api/generate?model={MODEL}&frames=8&seed=2"),
            primer.clone(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.head);
        // NDJSON in HTTP chunks: the lines that are JSON objects.
        let body = String::from_utf8(answer.body).unwrap();
        let first: serde_json::Value = body
            .lines()
            .find(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap();
        assert_eq!(
            first["setting"],
            serde_json::json!({"key": "D major", "meter": "6/8", "tempo_bpm": 120.0, "bar_frames": 6.0})
        );
        let original = pianoroll::read_midi(&primer, &as_written()).unwrap().roll;
        let pitches: Vec<Vec<u8>> = original
            .frames()
            .iter()
            .map(|f| f.pitches().collect())
            .collect();
        assert_eq!(first["primer"], serde_json::json!(pitches));

        let rendered = post(
            format!("/api/render?model={MODEL}&format=mid&key=D%20major&meter=6%2F8&tempo_bpm=120"),
            serde_json::to_vec(&pitches).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(rendered.status, 200, "{}", rendered.head);
        assert_d_major_six_eight(&rendered.body, original.len(), "/api/render");

        let refused = post(
            format!("/api/render?model={MODEL}&format=mid&meter=7%2F0"),
            b"[[60]]".to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(refused.status, 400);
        let error = refused.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with("meter: "), "{error}");
        server.stop().await;
    });
}

/// `serve generate --count 3 --seed 5` writes three different pieces into one folder, named by
/// seed, each the piece its seed gives alone; a count above the server's limit of concurrent
/// generations (256) still writes them all (the client keeps fewer in flight); a count past the
/// last seed is refused.
#[test]
fn count_writes_pieces_named_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let addr = server.addr.to_string();
        let out = dir.path().to_owned();
        let output = tokio::task::spawn_blocking(move || {
            let generate = |args: &[&str]| {
                std::process::Command::new(serve_binary())
                    .arg("generate")
                    .args(["--addr", &addr, "--model", MODEL, "--frames", "24"])
                    .args(args)
                    .output()
                    .unwrap()
            };
            let pieces = out.join("pieces");
            let rolls = out.join("rolls");
            let path = |p: &Path| p.to_string_lossy().into_owned();
            let many = generate(&[
                "--count",
                "3",
                "--seed",
                "5",
                "-o",
                &path(&pieces),
                "--png",
                &path(&rolls),
            ]);
            let alone = generate(&["--seed", "6", "-o", &path(&out.join("six.mid"))]);
            let too_far = generate(&["--count", "2", "--seed", &u64::MAX.to_string(), "-o", "x"]);
            let crowd = generate(&["--count", "300", "-o", &path(&out.join("crowd"))]);
            assert!(
                crowd.status.success(),
                "{}",
                String::from_utf8_lossy(&crowd.stderr)
            );
            assert_eq!(std::fs::read_dir(out.join("crowd")).unwrap().count(), 300);
            (many, alone, too_far, pieces, rolls)
        })
        .await
        .unwrap();
        let (many, alone, too_far, pieces, rolls) = output;
        assert!(
            many.status.success(),
            "{}",
            String::from_utf8_lossy(&many.stderr)
        );
        assert!(alone.status.success());
        let mut names: Vec<String> = std::fs::read_dir(&pieces)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["5.mid", "6.mid", "7.mid"]);
        let midi: Vec<Vec<u8>> = names
            .iter()
            .map(|n| std::fs::read(pieces.join(n)).unwrap())
            .collect();
        assert!(midi[0] != midi[1] && midi[1] != midi[2] && midi[0] != midi[2]);
        assert_eq!(
            midi[1],
            std::fs::read(dir.path().join("six.mid")).unwrap(),
            "seed 6 in the batch is seed 6 alone"
        );
        for seed in 5..8 {
            let png = std::fs::read(rolls.join(format!("{seed}.png"))).unwrap();
            assert!(png.starts_with(b"\x89PNG"));
        }
        assert_eq!(String::from_utf8_lossy(&many.stdout).lines().count(), 3);
        assert!(!too_far.status.success());
        assert!(String::from_utf8_lossy(&too_far.stderr).contains("--count 2"));
        server.stop().await;
    });
}

/// `Compose` with `count: 3` answers three pieces, seeds 5, 6 and 7: the first in the response's
/// own fields, the others in `more`, each the piece its seed gives alone; a count over the
/// server's concurrent limit, or past the largest seed, is refused naming `count`.
#[test]
fn compose_count_answers_pieces_by_seed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let mut client = ComposerClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let ask = |seed: u64, count: u32| ComposeRequest {
            generation: Some(request(16, seed)),
            png: true,
            audio: String::new(),
            count,
        };
        let many = client.compose(ask(5, 3)).await.unwrap().into_inner();
        let seeds: Vec<u64> = many.more.iter().map(|p| p.seed).collect();
        assert_eq!(seeds, [6, 7]);
        let alone = |seed| {
            let mut client = client.clone();
            async move { client.compose(ask(seed, 1)).await.unwrap().into_inner() }
        };
        let five = alone(5).await;
        assert_eq!(many.midi, five.midi, "the first piece is seed 5's");
        assert!(five.more.is_empty(), "one piece: nothing more");
        for piece in &many.more {
            let single = alone(piece.seed).await;
            assert_eq!(piece.midi, single.midi, "seed {}", piece.seed);
            assert_eq!(piece.png, single.png, "seed {}", piece.seed);
            assert_eq!(
                piece.summary.as_ref().unwrap().generated_frames,
                16,
                "seed {}",
                piece.seed
            );
        }
        assert!(many.midi != many.more[0].midi && many.more[0].midi != many.more[1].midi);
        for (seed, count) in [(0, 100_000), (u64::MAX, 2)] {
            let refused = client.compose(ask(seed, count)).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
            assert!(refused.message().starts_with("count: "), "{refused:?}");
        }
        server.stop().await;
    });
}
