//! The server end to end, its limits: bad requests get their status code and the server keeps
//! serving; generations over the concurrency limit are refused until a slot is free again, and
//! a client that goes away frees its slot (tiny models from `serving/`).

mod serving;

use std::time::{Duration, Instant};

use proto::pianoroll_v1::{
    ComposeRequest, Frame as WireFrame, Frames, GenerateRequest, generate_request,
    generate_response,
};
use serve::engine::Limits;
use tokio_stream::StreamExt;
use tonic::Code;

use serving::{Running, request, runtime, status_of};

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
                count: 0,
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
