//! What the server bounds, probed as an attacker would: requests larger than it will render are
//! refused with 413 and a JSON error before anything is allocated for them, made-up model names
//! do not grow the metrics, and the server goes on serving. HTTP is spoken with a plain HTTP/1.1
//! client, with no library between the test and the bytes.

mod common;
use common::Running;
use pianoroll_tests::http_request;
use serve::server::ServerConfig;

/// The JSON error message of `response`, which must have `status`.
fn refused(response: &pianoroll_tests::HttpResponse, status: u16) -> String {
    assert_eq!(response.status, status, "{}", response.head);
    response.json()["error"].as_str().unwrap().to_owned()
}

/// A JSON roll of `frames` silent frames.
fn silent_roll(frames: usize) -> Vec<u8> {
    let mut body = b"[".to_vec();
    for i in 0..frames {
        body.extend_from_slice(if i == 0 { b"[]" } else { b",[]" });
    }
    body.push(b']');
    body
}

#[test]
fn render_refuses_rolls_longer_than_the_server_renders() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start_with_http(ServerConfig::cpu(common::shipped_models())).await;
        let page = server.page.unwrap();
        let post = |path: &'static str, body: Vec<u8>| {
            tokio::task::spawn_blocking(move || http_request(page, "POST", path, &[], &body))
        };

        // 1,300,000 empty frames in 3.9 MB: as a WAV, 325,000 s of audio (57 GB). This used to
        // make the server allocate it and abort.
        let huge = post(
            "/api/render?model=lstm-nade&format=wav",
            silent_roll(1_300_000),
        )
        .await
        .unwrap();
        let message = refused(&huge, 413);
        assert!(
            message.contains("1300000 frames") && message.contains("at most 20000"),
            "{message}"
        );

        // Within the frame limit but over the response limit as audio (19,000 frames of 0.25 s
        // make an 838 MB WAV): refused by its size, which the message gives.
        let long = post(
            "/api/render?model=lstm-nade&format=wav",
            silent_roll(19_000),
        )
        .await
        .unwrap();
        let message = refused(&long, 413);
        assert!(
            message.contains("audio") && message.contains("MB"),
            "{message}"
        );

        // The same roll as MIDI is small, and is written.
        let midi = post(
            "/api/render?model=lstm-nade&format=mid",
            silent_roll(19_000),
        )
        .await
        .unwrap();
        assert_eq!(midi.status, 200, "{}", midi.head);
        assert!(midi.body.starts_with(b"MThd"));

        // A short roll still plays: 8 frames of 0.25 s, 2 s of 44.1 kHz 16-bit stereo.
        let short = post(
            "/api/render?model=lstm-nade&format=wav",
            b"[[60,64,67],[60,64,67],[],[],[62],[62],[],[]]".to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(short.status, 200, "{}", short.head);
        assert_eq!(short.body.len(), 44 + 2 * 44_100 * 4);

        // And the server is still there.
        let models =
            tokio::task::spawn_blocking(move || http_request(page, "GET", "/api/models", &[], b""))
                .await
                .unwrap();
        assert_eq!(models.status, 200);
        assert_eq!(models.json().as_array().unwrap().len(), 2);
        server.stop().await;
    });
}

/// Made-up model names, through every API that takes one, count as one `(unknown)` series per
/// method: 600 of them leave the exposition as small as one.
#[test]
fn unknown_model_names_share_one_metrics_series() {
    use proto::inference::ModelInferRequest;
    use proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    use proto::pianoroll_v1::GenerateRequest;
    use proto::pianoroll_v1::composer_client::ComposerClient;

    const NAMES: usize = 200;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start_with_http(ServerConfig::cpu(common::shipped_models())).await;
        let (page, metrics) = (server.page.unwrap(), server.metrics.unwrap());
        let scrape = || async move {
            tokio::task::spawn_blocking(move || pianoroll_tests::http_get(metrics, "/metrics").1)
                .await
                .unwrap()
        };
        let before = scrape().await;

        let mut composer = ComposerClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let mut v2 = GrpcInferenceServiceClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        for i in 0..NAMES {
            let name = format!("no-such-model-{i}");
            let status = composer
                .generate(GenerateRequest {
                    model: name.clone(),
                    frames: 4,
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::NotFound);
            let status = v2
                .model_infer(ModelInferRequest {
                    model_name: name.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::NotFound);
            let path = format!("/api/generate?model={name}&frames=4");
            let answer =
                tokio::task::spawn_blocking(move || http_request(page, "POST", &path, &[], b""))
                    .await
                    .unwrap();
            assert_eq!(answer.status, 404, "{}", answer.head);
        }

        let after = scrape().await;
        let series = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("pianoroll_requests_total{"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert!(series(&before).is_empty(), "{before}");
        let after_series = series(&after);
        assert!(
            !after.contains("no-such-model"),
            "a made-up name became a label"
        );
        // The page's generations are counted as Generate.
        for (method, count) in [("Generate", 2 * NAMES), ("ModelInfer", NAMES)] {
            let line = format!(
                "pianoroll_requests_total{{method=\"{method}\",model=\"(unknown)\",code=\"NotFound\"}} {count}"
            );
            assert!(after_series.contains(&line), "{line} in {after_series:#?}");
        }
        assert_eq!(after_series.len(), 2, "{after_series:#?}");
        assert!(after.len() < 2 * before.len() + 1_000, "{after}");
        server.stop().await;
    });
}

/// Whether the server closed `stream` within `within`: a read sees the end (or a reset) rather
/// than timing out.
fn closed_within(stream: &mut std::net::TcpStream, within: std::time::Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            // An HTTP/2 server speaks first (its SETTINGS); read past what it says.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Connections that never send a request, or send a header a little at a time, are closed
/// after `--handshake-timeout-seconds` on every listener; clients that do speak are served
/// however long they then stay connected.
#[test]
fn connections_that_ask_nothing_are_closed_on_every_listener() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = ServerConfig {
            limits: serve::engine::Limits {
                handshake_timeout: Duration::from_secs(1),
                ..Default::default()
            },
            ..ServerConfig::cpu(common::shipped_models())
        };
        let server = Running::start_with_http(config).await;
        let mut client = proto::pianoroll_v1::composer_client::ComposerClient::connect(format!(
            "http://{}",
            server.addr
        ))
        .await
        .unwrap();
        let (grpc, page, metrics) = (server.addr, server.page.unwrap(), server.metrics.unwrap());
        let started = Instant::now();
        let closed = tokio::task::spawn_blocking(move || {
            let connect = |addr| std::net::TcpStream::connect(addr).unwrap();
            let mut silent = [connect(grpc), connect(page), connect(metrics)];
            // Half a preface, half a header: started, never finished.
            let mut grpc_partial = connect(grpc);
            grpc_partial.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
            let mut page_partial = connect(page);
            page_partial
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            let mut closed: Vec<bool> = silent
                .iter_mut()
                .map(|s| closed_within(s, Duration::from_secs(5)))
                .collect();
            closed.push(closed_within(&mut grpc_partial, Duration::from_secs(5)));
            closed.push(closed_within(&mut page_partial, Duration::from_secs(5)));
            closed
        })
        .await
        .unwrap();
        assert_eq!(
            closed, [true; 5],
            "gRPC, page, metrics, partial gRPC, partial page"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );

        // The client connected before all this, and has been idle past the deadline since.
        let models = client
            .list_models(proto::pianoroll_v1::ListModelsRequest {})
            .await
            .unwrap();
        assert_eq!(models.into_inner().models.len(), 2);
        server.stop().await;
    });
}

/// What axum could not read comes back as the API's JSON error too: a query string that does
/// not parse (400) and a body over the message limit (413).
#[test]
fn unreadable_requests_get_json_errors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = ServerConfig {
            limits: serve::engine::Limits {
                max_message_bytes: 65_536,
                ..Default::default()
            },
            ..ServerConfig::cpu(common::shipped_models())
        };
        let server = Running::start_with_http(config).await;
        let page = server.page.unwrap();
        let answers = tokio::task::spawn_blocking(move || {
            [
                http_request(
                    page,
                    "POST",
                    "/api/generate?model=lstm-nade&frames=-3",
                    &[],
                    b"",
                ),
                http_request(page, "POST", "/api/render?model=lstm-nade", &[], b"[]"),
                // One byte more than --max-message-bytes (all of it read, so the connection
                // closes cleanly after the answer).
                http_request(
                    page,
                    "POST",
                    "/api/generate?model=lstm-nade&frames=4",
                    &[],
                    &[b'x'; 65_537],
                ),
                http_request(page, "GET", "/no/such/page", &[], b""),
            ]
        })
        .await
        .unwrap();
        let seen: Vec<(u16, String)> = answers
            .iter()
            .map(|a| (a.status, a.json()["error"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(seen[0].0, 400);
        assert!(seen[0].1.contains("frames"), "{seen:?}");
        assert_eq!(seen[1].0, 400);
        assert!(seen[1].1.contains("format"), "{seen:?}");
        assert_eq!(seen[2].0, 413);
        assert!(
            seen[2].1.to_lowercase().contains("length limit"),
            "{seen:?}"
        );
        assert_eq!(seen[3].0, 404);
        server.stop().await;
    });
}

/// With a token, the metrics need it too (Prometheus sends it as a bearer token), and the
/// scheme may be written in any case, on gRPC and HTTP alike.
#[test]
fn the_token_guards_the_metrics_and_takes_the_scheme_in_any_case() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = ServerConfig {
            token: Some("m3trics".to_owned()),
            ..ServerConfig::cpu(common::shipped_models())
        };
        let server = Running::start_with_http(config).await;
        let metrics = server.metrics.unwrap();
        let answers = tokio::task::spawn_blocking(move || {
            [
                http_request(metrics, "GET", "/metrics", &[], b""),
                http_request(
                    metrics,
                    "GET",
                    "/metrics",
                    &[("Authorization", "Bearer nope")],
                    b"",
                ),
                http_request(
                    metrics,
                    "GET",
                    "/metrics",
                    &[("Authorization", "bearer m3trics")],
                    b"",
                ),
                http_request(
                    metrics,
                    "GET",
                    "/metrics",
                    &[("Authorization", "BEARER m3trics")],
                    b"",
                ),
            ]
        })
        .await
        .unwrap();
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [401, 401, 200, 200]);
        assert!(
            answers[0].json()["error"]
                .as_str()
                .unwrap()
                .contains("Bearer TOKEN")
        );
        assert!(String::from_utf8_lossy(&answers[2].body).contains("pianoroll_active_generations"));

        let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let lowercase = |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", "bearer m3trics".parse().unwrap());
            Ok(request)
        };
        let mut client = proto::pianoroll_v1::composer_client::ComposerClient::with_interceptor(
            channel, lowercase,
        );
        let models = client
            .list_models(proto::pianoroll_v1::ListModelsRequest {})
            .await
            .unwrap();
        assert_eq!(models.into_inner().models.len(), 2);
        server.stop().await;
    });
}
