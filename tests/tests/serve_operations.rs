//! The server end to end, what running it takes: health and reflection, the Prometheus metrics,
//! the bearer token, loading (a card it cannot drive refused by name, the device chosen
//! explicitly), and stopping (a shutdown or SIGTERM lets running generations finish). Tiny
//! models from `serving/`.

mod serving;

use std::time::Duration;

use proto::inference::ServerLiveRequest;
use proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{ListModelsRequest, generate_response};
use serve::engine::Limits;
use serve::runtime::Device;
use serve::server::{SERVICE_NAME, Server, ServerConfig};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

use serving::{Running, generate, models, request, runtime, status_of};

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
