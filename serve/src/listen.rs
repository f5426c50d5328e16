//! Accepting connections on every listener, with deadlines a connection must meet before it
//! may hold resources: a peer that connects and then sends nothing, or a request header a byte
//! at a time, is closed after `--handshake-timeout-seconds` instead of holding its socket and
//! task forever.
//!
//! - gRPC (both APIs, one port): the TLS handshake, when there is TLS, and then the HTTP/2
//!   preface and the first frame header must arrive within the deadline ([`grpc_incoming`]).
//!   After that the HTTP/2 keep-alive pings of `--idle-timeout-seconds` take over.
//! - HTTP/1 (the page, the metrics): each request header must arrive whole within the deadline,
//!   counted from when the server starts waiting for it, so an idle keep-alive connection is
//!   closed after it too (hyper's header read timeout; [`serve_http`]).
//!
//! TLS is done here rather than by tonic because tonic's TLS accept has no deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// What a client sends first on HTTP/2: the 24-byte preface and the header of its SETTINGS
/// frame. Until these have arrived the connection is only a socket.
const HTTP2_OPENING_BYTES: usize = 24 + 9;

/// Any stream a connection is served over (TCP, or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection whose first `needed` bytes must arrive before `deadline`: reading fails with
/// `TimedOut` after it, which makes the server drop the connection.
pub struct Deadlined {
    inner: Box<dyn Io>,
    needed: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Deadlined {
    fn new(inner: Box<dyn Io>, needed: usize, deadline: tokio::time::Instant) -> Deadlined {
        Deadlined {
            inner,
            needed,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl AsyncRead for Deadlined {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.needed = this.needed.saturating_sub(buf.filled().len() - before);
                Poll::Ready(result)
            }
            // Still waiting for the opening bytes: the deadline wakes this task too.
            Poll::Pending if this.needed > 0 && this.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent no request in time",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Deadlined {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// The connections of `listener` for tonic, each through its TLS handshake (when `tls` is
/// given) and due to send its HTTP/2 opening within `handshake` of being accepted. Connections
/// that miss it are closed and logged at debug level; they never reach tonic.
///
/// The listener closes when `stop` completes (new connections are then refused while running
/// calls drain) or when the stream is dropped.
pub fn grpc_incoming(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handshake: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> ReceiverStream<io::Result<Deadlined>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop => return,
                () = sender.closed() => return,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let sender = sender.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + handshake;
                let io: Box<dyn Io> = match tls {
                    None => Box::new(tcp),
                    Some(tls) => match tokio::time::timeout_at(deadline, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => Box::new(stream),
                        Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => return tracing::debug!("TLS handshake not done in time"),
                    },
                };
                let _ = sender
                    .send(Ok(Deadlined::new(io, HTTP2_OPENING_BYTES, deadline)))
                    .await;
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// The TLS acceptor for a certificate chain and key in PEM: HTTP/2 only, as gRPC needs.
pub fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert: not a PEM certificate chain ({e})"))?;
    if certs.is_empty() {
        return Err("--tls-cert: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("--tls-key: not a PEM private key ({e})"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert / --tls-key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// When the first certificate of a PEM chain stops being valid and whether it is valid now: a
/// server on an expired certificate starts, but says so.
pub fn certificate_validity(cert_pem: &[u8]) -> Option<(String, bool)> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(cert_pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let validity = cert.validity();
    Some((validity.not_after.to_string(), validity.is_valid()))
}

/// Serve `router` over HTTP/1.1 on `listener` until `shutdown`, each request header due within
/// `header_timeout` (zero: no deadline); then let requests in flight finish.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    builder.header_read_timeout((!header_timeout.is_zero()).then_some(header_timeout));
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(tcp), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("HTTP connection closed: {e}");
            }
        });
    }
    graceful.shutdown().await;
}
