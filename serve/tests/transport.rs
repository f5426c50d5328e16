//! The connection-level protections: TLS with a self-signed certificate (our client, Python's
//! tritonclient, health checks), clear errors for unusable certificate files, and the idle
//! timeout that disconnects a client which stopped reading, freeing its generation slot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{GenerateRequest, generate_response};
use serve::client::{Endpoint, GenerateArgs};
use serve::engine::Limits;
use serve::server::{Server, ServerConfig, TlsFiles};
use tokio_stream::StreamExt;

mod common;
use common::Running;

/// A self-signed certificate for 127.0.0.1 and localhost, as `cert.pem` and `key.pem` in `dir`.
fn self_signed(dir: &Path) -> TlsFiles {
    let key = rcgen::generate_simple_self_signed(["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, key.cert.pem()).unwrap();
    std::fs::write(&files.key, key.signing_key.serialize_pem()).unwrap();
    files
}

const TRITON_OVER_TLS: &str = r#"
import json, sys
import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

url, ca, token = sys.argv[1:4]
secure = triton.InferenceServerClient(url=url, ssl=True, root_certificates=ca)
plain = triton.InferenceServerClient(url=url)
frames = triton.InferInput("frames", [1], "INT32")
frames.set_data_from_numpy(np.array([6], dtype=np.int32))

def outcome(call):
    try:
        return call()
    except InferenceServerException as e:
        return e.status()

print(json.dumps({
    "live": outcome(lambda: secure.is_server_live(headers={"authorization": "Bearer " + token})),
    "frames": outcome(lambda: int(secure.infer("lstm-nade", [frames],
        headers={"authorization": "Bearer " + token}).as_numpy("roll").shape[0])),
    "no_token": outcome(lambda: secure.is_server_live()),
    "plain": outcome(lambda: plain.is_server_live(client_timeout=5)),
}))
"#;

/// `--tls-cert/--tls-key`: clients that trust the certificate are served (with the token the
/// server also asks for), plain-text clients are not, health stays open over TLS.
#[test]
fn tls_serves_clients_that_trust_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tls-token\n").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig {
            tls: Some(tls.clone()),
            token: Some("tls-token".to_owned()),
            ..ServerConfig::cpu(common::shipped_models())
        })
        .await;
        let endpoint = Endpoint {
            addr: server.addr.to_string(),
            token_file: Some(token_file.clone()),
            tls_ca: Some(tls.cert.clone()),
        };
        serve::client::list(&endpoint).await.unwrap();
        let output = dir.path().join("piece.mid");
        serve::client::generate(
            &endpoint,
            &GenerateArgs {
                model: "rwkv-nade".to_owned(),
                frames: 8,
                temperature: None,
                seed: 1,
                primer: None,
                melody: None,
                tempo_bpm: None,
                key: None,
                meter: None,
                output: output.clone(),
                png: None,
                wav: None,
                count: 1,
            },
        )
        .await
        .unwrap();
        assert!(std::fs::read(&output).unwrap().starts_with(b"MThd"));

        let plain = Endpoint {
            tls_ca: None,
            ..endpoint.clone()
        };
        let error = serve::client::list(&plain).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("--tls-ca"),
            "a hint: {error:#}"
        );
        let untrusted = Endpoint {
            addr: format!("https://{}", server.addr),
            tls_ca: None,
            ..endpoint.clone()
        };
        let error = serve::client::list(&untrusted).await.unwrap_err();
        assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");

        let channel = tonic::transport::Channel::from_shared(format!("https://{}", server.addr))
            .unwrap()
            .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
                tonic::transport::Certificate::from_pem(std::fs::read(&tls.cert).unwrap()),
            ))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();

        if let Some(python) = pianoroll_tests::python() {
            let url = server.addr.to_string();
            let ca = tls.cert.clone();
            let seen = tokio::task::spawn_blocking(move || {
                pianoroll_tests::python_json(
                    &python,
                    TRITON_OVER_TLS,
                    &[url.as_ref(), ca.as_os_str(), "tls-token".as_ref()],
                )
            })
            .await
            .unwrap();
            assert_eq!(seen["live"], true, "{seen}");
            assert_eq!(seen["frames"], 6, "{seen}");
            assert_eq!(seen["no_token"], "StatusCode.UNAUTHENTICATED", "{seen}");
            assert_eq!(seen["plain"], "StatusCode.UNAVAILABLE", "{seen}");
        }
        server.stop().await;
    });
}

fn load_error(tls: TlsFiles) -> String {
    match Server::load(ServerConfig {
        tls: Some(tls),
        ..ServerConfig::cpu(common::shipped_models())
    }) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

/// Unusable certificate files stop the server before it serves, naming the flag and file.
#[test]
fn bad_tls_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = self_signed(dir.path());
    let missing = TlsFiles {
        cert: dir.path().join("nope.pem"),
        ..good.clone()
    };
    let error = load_error(missing);
    assert!(
        error.contains("--tls-cert") && error.contains("nope.pem"),
        "{error}"
    );
    let garbage: PathBuf = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    let error = load_error(TlsFiles {
        key: garbage,
        ..good.clone()
    });
    assert!(
        error.contains("--tls-key") && error.contains("garbage.pem"),
        "{error}"
    );
    // A certificate whose key is another's.
    let other = tempfile::tempdir().unwrap();
    let error = load_error(TlsFiles {
        key: self_signed(other.path()).key,
        ..good
    });
    assert!(error.contains("--tls-cert"), "{error}");
}

fn long_generation(frames: u32) -> GenerateRequest {
    GenerateRequest {
        model: "rwkv-nade".to_owned(),
        frames,
        temperature: None,
        seed: 5,
        chunk_frames: 1,
        ..Default::default()
    }
}

/// A gRPC `Generate` call as HTTP/2 frames, for a client that can stop reading.
fn grpc_request(addr: std::net::SocketAddr) -> (http::Request<()>, bytes::Bytes) {
    use prost::Message;
    let message = long_generation(1_000_000).encode_to_vec();
    let mut body = vec![0u8];
    body.extend((message.len() as u32).to_be_bytes());
    body.extend(message);
    let request = http::Request::post(format!("http://{addr}/pianoroll.v1.Composer/Generate"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    (request, bytes::Bytes::from(body))
}

/// Whether a 4-frame request is taken now (the server runs one generation at a time here).
async fn slot_free(client: &mut ComposerClient<tonic::transport::Channel>) -> bool {
    match client.generate(long_generation(4)).await {
        Ok(response) => response.into_inner().next().await.unwrap().is_ok(),
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            false
        }
    }
}

/// A client that starts a generation of a million frames and then stops reading its socket
/// (its HTTP/2 connection is no longer driven, so pings go unanswered) is disconnected after
/// the idle timeout, and its generation stops: the one slot is free again long before the
/// generation would have ended.
#[test]
fn a_client_that_stops_reading_is_disconnected_and_its_slot_freed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig {
            limits: Limits {
                max_frames: 1_000_000,
                max_concurrent: 1,
                idle_timeout: Duration::from_secs(2),
                ..Limits::default()
            },
            ..ServerConfig::cpu(common::shipped_models())
        })
        .await;
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (send, connection) = h2::client::handshake(tcp).await.unwrap();
        let (stall, stalled) = tokio::sync::oneshot::channel::<()>();
        // Drives the connection until told to stall, then hands it back, open but undriven.
        let driver = tokio::spawn(async move {
            let mut connection = Box::pin(connection);
            tokio::select! {
                _ = &mut connection => panic!("the connection ended before the stall"),
                _ = stalled => {}
            }
            Some(connection)
        });
        let mut send = send.ready().await.unwrap();
        let (request, body) = grpc_request(server.addr);
        let (response, mut request_stream) = send.send_request(request, false).unwrap();
        request_stream.send_data(body, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        let mut frames = response.into_body();
        frames.data().await.unwrap().unwrap();
        stall.send(()).unwrap();
        let held = driver.await.unwrap();
        let stalled_at = Instant::now();

        let mut client = ComposerClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        assert!(
            !slot_free(&mut client).await,
            "the stalled generation holds the slot"
        );
        loop {
            if slot_free(&mut client).await {
                break;
            }
            assert!(
                stalled_at.elapsed() < Duration::from_secs(20),
                "the slot was not freed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let freed_after = stalled_at.elapsed();
        eprintln!("slot free {freed_after:?} after the client stopped reading");
        assert!(freed_after >= Duration::from_millis(900), "{freed_after:?}");
        drop((held, frames));
        server.stop().await;
    });
}

/// A client that reads slowly but whose connection is alive (it answers pings) is not cut off
/// by the same idle timeout: all its frames arrive.
#[test]
fn a_slow_but_live_reader_is_not_cut_off() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig {
            limits: Limits {
                idle_timeout: Duration::from_secs(1),
                ..Limits::default()
            },
            ..ServerConfig::cpu(common::shipped_models())
        })
        .await;
        let mut client = ComposerClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let mut stream = client
            .generate(long_generation(40))
            .await
            .unwrap()
            .into_inner();
        let mut frames = 0;
        let mut summary = false;
        while let Some(message) = stream.next().await {
            match message.unwrap().event.unwrap() {
                generate_response::Event::Chunk(chunk) => {
                    frames += chunk.frames.len();
                    if frames <= 3 {
                        tokio::time::sleep(Duration::from_millis(1_500)).await;
                    }
                }
                generate_response::Event::Summary(_) => summary = true,
            }
        }
        assert_eq!(frames, 40);
        assert!(summary);
        server.stop().await;
    });
}

/// A certificate past its end still loads (the operator may be replacing it), and what the
/// server warns about is read from it: valid until when, and not valid now.
#[test]
fn an_expired_certificate_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("expired.pem"),
        key: dir.path().join("expired-key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let (until, valid) = serve::listen::certificate_validity(cert.pem().as_bytes()).unwrap();
    assert!(!valid);
    assert!(until.contains("2021"), "{until}");
    let other = tempfile::tempdir().unwrap();
    let fresh = self_signed(other.path());
    let (_, valid) =
        serve::listen::certificate_validity(&std::fs::read(&fresh.cert).unwrap()).unwrap();
    assert!(valid);
    Server::load(ServerConfig {
        tls: Some(files),
        ..ServerConfig::cpu(common::shipped_models())
    })
    .expect("an expired certificate loads, with a warning");
}
