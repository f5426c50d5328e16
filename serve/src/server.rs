//! Putting the server together: ONNX Runtime, the models, the Composer service, the Open
//! Inference Protocol service, the standard health and reflection services, and a graceful
//! shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use proto::pianoroll_v1::composer_server::ComposerServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::engine::{Engine, Limits};
use crate::registry::{Broken, LoadedModel, RegistryError, load_models};
use crate::runtime::{Device, RuntimeError};
use crate::service::ComposerService;
use crate::step::StepOptions;
use crate::v2::grpc::InferenceService;

/// The fully qualified name of the service, as health checks and reflection know it.
pub const SERVICE_NAME: &str = "pianoroll.v1.Composer";

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub models: PathBuf,
    pub device: Device,
    /// ONNX Runtime intra-op threads per model (0: its default).
    pub threads: usize,
    /// How batches go through the step graph ([`crate::step`]).
    pub step: StepOptions,
    pub limits: Limits,
    /// After a shutdown signal, how long running generations may take to finish.
    pub drain: Duration,
    /// The ONNX Runtime library, if not the default (see [`crate::runtime`]).
    pub onnxruntime: Option<PathBuf>,
    /// The SoundFont `Compose` plays audio with (default: a General MIDI one of the system's,
    /// else the built-in synthesiser; [`pianoroll::audio::Synth::load`]).
    pub soundfont: Option<PathBuf>,
    /// The bearer token every composer and inference call must carry ([`crate::auth`]);
    /// `None`: open.
    pub token: Option<String>,
    /// Serve gRPC over TLS with this certificate and key; `None`: plain HTTP/2.
    pub tls: Option<TlsFiles>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files read and checked: a certificate and key that rustls can serve with. A
    /// certificate that has expired (or is not yet valid) is served, with a warning.
    fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| ServeError::Tls(format!("{flag} {}: {e}", path.display())))
        };
        let (cert, key) = (
            read("--tls-cert", &self.cert)?,
            read("--tls-key", &self.key)?,
        );
        let acceptor = crate::listen::tls_acceptor(&cert, &key).map_err(|e| {
            ServeError::Tls(format!(
                "{e} (--tls-cert {}, --tls-key {})",
                self.cert.display(),
                self.key.display()
            ))
        })?;
        match crate::listen::certificate_validity(&cert) {
            Some((_, true)) => {}
            Some((not_after, false)) => tracing::warn!(
                "--tls-cert {}: the certificate is not valid now (valid until {not_after}, and \
                 maybe not yet begun); clients will refuse it",
                self.cert.display()
            ),
            None => tracing::warn!(
                "--tls-cert {}: could not read the certificate's validity",
                self.cert.display()
            ),
        }
        Ok(acceptor)
    }
}

/// ONNX Runtime's threads per model when `--threads` is not given: on the CPU the machine's
/// cores but one, shared between the `models` (at least one each), since each model's steps run
/// on its own batcher thread and a large batch's step spreads over rows, while the one core
/// left serves the network (encoding every frame for every stream). On this 2-core machine that
/// keeps one thread a model, which measured best for RWKV (a second thread cost RWKV-NADE 28%
/// of its frames/s at 64 streams, and gained LSTM-NADE 15%: BENCHMARKS.md). On CUDA one, since
/// the host threads only launch kernels.
pub fn default_threads(device: Device, models: usize) -> usize {
    match device {
        Device::Cuda => 1,
        Device::Cpu | Device::Auto => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores.saturating_sub(1) / models.max(1)).max(1)
        }
    }
}

impl ServerConfig {
    /// The model folders in `models`, on the CPU with one ONNX Runtime thread per model, the
    /// default limits, 5 s of drain, the default ONNX Runtime and SoundFont: what tests and
    /// benchmarks start from.
    pub fn cpu(models: PathBuf) -> ServerConfig {
        ServerConfig {
            models,
            device: Device::Cpu,
            threads: 1,
            step: StepOptions::default(),
            limits: Limits::default(),
            drain: Duration::from_secs(5),
            onnxruntime: None,
            soundfont: None,
            token: None,
            tls: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Audio(#[from] pianoroll::audio::AudioError),
    #[error("--models {0}: no usable model folder (each needs model.onnx and model.json)")]
    NoModels(String),
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(
        "--batch-rows {rows} is below --max-concurrent {max_concurrent}: every batch must fit \
         the one shape"
    )]
    BatchRows { rows: usize, max_concurrent: usize },
}

/// A server with its models loaded, ready to serve on a listener.
pub struct Server {
    models: Arc<BTreeMap<String, LoadedModel>>,
    broken: Vec<Broken>,
    synth: pianoroll::audio::Synth,
    config: ServerConfig,
    /// The checked TLS settings, when serving over TLS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where the web page is served, when it is ([`Server::with_http`]).
    http: Option<TcpListener>,
    /// Where the metrics are served, when they are ([`Server::with_metrics`]).
    metrics: Option<TcpListener>,
    /// Where KServe v2 REST is served, when it is ([`Server::with_rest`]).
    rest: Option<TcpListener>,
}

impl Server {
    /// Load ONNX Runtime and every model folder (blocking). Broken folders are logged and
    /// skipped; having none that works is an error.
    pub fn load(config: ServerConfig) -> Result<Server, ServeError> {
        let tls = config.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
        if let Some(rows) = config.step.batch_rows
            && rows < config.limits.max_concurrent
        {
            return Err(ServeError::BatchRows {
                rows,
                max_concurrent: config.limits.max_concurrent,
            });
        }
        let environment = crate::runtime::init(config.onnxruntime.as_deref())?;
        let (models, broken) = load_models(
            environment,
            &config.models,
            config.device,
            config.threads,
            &config.step,
        )?;
        if models.is_empty() {
            return Err(ServeError::NoModels(config.models.display().to_string()));
        }
        let synth = pianoroll::audio::Synth::load(config.soundfont.as_deref())?;
        tracing::info!("audio: {}", synth.describe());
        Ok(Server {
            models: Arc::new(models),
            broken,
            synth,
            config,
            tls,
            http: None,
            metrics: None,
            rest: None,
        })
    }

    /// (name, kind, execution provider) of each model.
    pub fn models(&self) -> Vec<(String, String, &'static str)> {
        self.models
            .values()
            .map(|m| (m.name.clone(), m.card.kind.clone(), m.provider.name()))
            .collect()
    }

    /// Each model's batching statistics, live (for tests and benchmarks).
    pub fn batch_stats(&self) -> BTreeMap<String, Arc<crate::metrics::BatchStats>> {
        self.models
            .values()
            .map(|m| (m.name.clone(), m.batcher.stats()))
            .collect()
    }

    pub fn broken(&self) -> &[Broken] {
        &self.broken
    }

    /// Also serve Prometheus metrics ([`crate::metrics`]) on `listener`, at `GET /metrics`.
    pub fn with_metrics(mut self, listener: TcpListener) -> Server {
        self.metrics = Some(listener);
        self
    }

    /// Also serve the Open Inference Protocol over HTTP/JSON ([`crate::v2::rest`]) on
    /// `listener`.
    pub fn with_rest(mut self, listener: TcpListener) -> Server {
        self.rest = Some(listener);
        self
    }

    /// Also serve the web page and its HTTP API ([`crate::http`]) on `listener`.
    pub fn with_http(mut self, listener: TcpListener) -> Server {
        self.http = Some(listener);
        self
    }

    /// Serve on `listener` until `shutdown` completes; then stop taking calls and give running
    /// generations up to the configured drain time to finish.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let limits = self.config.limits;
        let engine = Engine::new(self.models.clone(), limits, self.synth.clone());
        // One protocol core under v2's two transports, so their statistics are one.
        let broken = self
            .broken
            .iter()
            .map(|b| {
                // The folder's own name, as a served model is named.
                let path = std::path::Path::new(&b.folder);
                let name = path.file_name().unwrap_or(path.as_os_str());
                (name.to_string_lossy().into_owned(), b.reason.clone())
            })
            .collect();
        let v2 = crate::v2::V2::new(engine.clone(), broken);
        // Both APIs: the same message limits; they and reflection need the token (if any),
        // health does not, so probes need none.
        let largest_response = limits.max_response_bytes.max(limits.max_message_bytes);
        let token = crate::auth::RequireToken::new(self.config.token.clone());
        let composer = InterceptedService::new(
            ComposerServer::new(ComposerService::new(engine.clone()))
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(largest_response),
            token.clone(),
        );
        let inference = InterceptedService::new(
            GrpcInferenceServiceServer::new(InferenceService::new(v2.clone()))
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(largest_response),
            token.clone(),
        );
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in [SERVICE_NAME, crate::v2::grpc::SERVICE_NAME, ""] {
            health
                .set_service_status(name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let descriptors = [
            proto::pianoroll_v1::FILE_DESCRIPTOR_SET,
            proto::inference::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ];
        let reflection_of_all = || {
            descriptors
                .iter()
                .fold(tonic_reflection::server::Builder::configure(), |b, d| {
                    b.register_encoded_file_descriptor_set(d)
                })
        };
        let reflection = InterceptedService::new(
            reflection_of_all()
                .build_v1()
                .expect("the API's descriptors are valid"),
            token.clone(),
        );
        let reflection_alpha = InterceptedService::new(
            reflection_of_all()
                .build_v1alpha()
                .expect("the API's descriptors are valid"),
            token.clone(),
        );

        let (stop_taking_calls, stopped) = tokio::sync::oneshot::channel::<()>();
        let (signalled, signal_seen) = tokio::sync::oneshot::channel::<()>();
        let (stop_page, page_stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_rest, rest_stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_accepting, accepting_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            shutdown.await;
            let _ = signalled.send(());
            let _ = stop_accepting.send(());
            let _ = stop_taking_calls.send(());
            let _ = stop_page.send(());
            let _ = stop_metrics.send(());
            let _ = stop_rest.send(());
        });
        // The page, the metrics and v2 REST: the same token as gRPC, each request header due within
        // the handshake timeout.
        let handshake = limits.handshake_timeout;
        if let Some(listener) = self.metrics {
            let router = crate::http::metrics_router(engine.clone(), token.clone());
            tokio::spawn(crate::listen::serve_http(
                listener,
                router,
                handshake,
                async {
                    let _ = metrics_stopped.await;
                },
            ));
        }
        if let Some(listener) = self.rest {
            let router = crate::v2::rest::router(v2, token.clone(), limits.max_message_bytes);
            tokio::spawn(crate::listen::serve_http(
                listener,
                router,
                handshake,
                async {
                    let _ = rest_stopped.await;
                },
            ));
        }
        if let Some(listener) = self.http {
            let router = crate::http::router(engine, token.clone(), limits.max_message_bytes);
            tokio::spawn(crate::listen::serve_http(
                listener,
                router,
                handshake,
                async {
                    let _ = page_stopped.await;
                },
            ));
        }
        let mut builder = tonic::transport::Server::builder();
        if !limits.idle_timeout.is_zero() {
            // A connection silent for half the timeout is pinged; one whose ping goes unanswered
            // for the other half is closed, and its streams with it (their generations stop).
            let half = limits.idle_timeout / 2;
            builder = builder
                .http2_keepalive_interval(Some(half))
                .http2_keepalive_timeout(Some(half));
        }
        let serving = builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(composer)
            .add_service(inference)
            .serve_with_incoming_shutdown(
                crate::listen::grpc_incoming(listener, self.tls, handshake, async {
                    let _ = accepting_stopped.await;
                }),
                async {
                    let _ = stopped.await;
                },
            );
        let drain = self.config.drain;
        let drain_deadline = async move {
            if signal_seen.await.is_ok() {
                tracing::info!("shutting down: finishing running generations");
                tokio::time::sleep(drain).await;
                tracing::warn!("drain time of {drain:?} over; stopping");
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = serving => result?,
            () = drain_deadline => {}
        }
        // The batcher threads stop once their queues are closed and their batches are done.
        let models = self.models;
        tokio::task::spawn_blocking(move || drop(models))
            .await
            .expect("stopping the batchers");
        Ok(())
    }
}

/// A future that completes at the first SIGINT (Ctrl-C) or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled, so no signal sent after the call
/// is missed (or left to its default action, ending the process).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
        let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Bind `addr` (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
