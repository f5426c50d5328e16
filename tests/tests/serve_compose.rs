//! The server end to end, `pianoroll.v1` `Compose`: the piece as MIDI (the streamed frames, as
//! `trainer sample` writes them, read by mido), PNG and WAV (read by Python's `wave` and sox),
//! from tiny models trained and exported once per test process (`serving/`).

mod serving;

use pianoroll::{Frame, RollSettings};
use proto::pianoroll_v1::{
    ComposeRequest, Frame as WireFrame, Frames, GenerateRequest, generate_request,
};
use serve::engine::Limits;
use tonic::Code;

use serving::{Running, generate, models, request, runtime};

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
                count: 0,
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
                    count: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .midi;
            let sampled = tokio::task::block_in_place(|| {
                let loaded = trainer::run::load(&runs.join(name), tch::Device::Cpu).unwrap();
                let settings = loaded.config.roll_settings;
                let primer = trainer::sample::Primer::read(
                    Some(&primer_path),
                    &settings,
                    &Default::default(),
                )
                .unwrap();
                let roll = trainer::sample::generate(
                    &loaded.model,
                    loaded.config.silent_start,
                    &primer.frames,
                    64,
                    0.9,
                    2024,
                    tch::Device::Cpu,
                )
                .unwrap();
                trainer::sample::sample_midi(&loaded, &primer, &roll)
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
            count: 0,
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
