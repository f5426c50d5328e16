//! What the server's integration tests share: a server on a free port of 127.0.0.1, in this
//! process, serving the models the repository ships (`models/`).

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pianoroll::{RollSettings, Transpose};

use serve::server::{Server, ServerConfig};

/// The models the repository ships.
pub fn shipped_models() -> PathBuf {
    pianoroll_tests::repo_root().join("models")
}

/// The Nottingham test tune ashover_simple_chords_11: a jig in D major and 6/8 at 120 bpm,
/// its tune over chords (the primer and the melody of the music tests).
pub fn d_major_jig() -> PathBuf {
    pianoroll_tests::nottingham().join("test/ashover_simple_chords_11.mid")
}

/// The benchmark grid, keys kept as written: how a person's tools see the files.
pub fn as_written() -> RollSettings {
    RollSettings {
        transpose: Transpose::None,
        ..RollSettings::benchmark()
    }
}

/// The `serve` binary of this build, for the command-line tests.
pub fn serve_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_serve"))
}

/// A server running until [`Running::stop`].
pub struct Running {
    /// The gRPC listener.
    pub addr: SocketAddr,
    /// The page's and the metrics' listeners, when started with [`Running::start_with_http`].
    pub page: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// KServe v2 REST's listener, when started with [`Running::start_with_rest`].
    pub rest: Option<SocketAddr>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), serve::server::ServeError>>,
}

impl Running {
    /// Load `config` and serve it (call inside a Tokio runtime).
    pub async fn start(config: ServerConfig) -> Running {
        Running::launch(config, false, false).await
    }

    /// Load `config` and serve it with the page and the metrics too.
    pub async fn start_with_http(config: ServerConfig) -> Running {
        Running::launch(config, true, false).await
    }

    /// Load `config` and serve it with KServe v2 REST, the page and the metrics too.
    pub async fn start_with_rest(config: ServerConfig) -> Running {
        Running::launch(config, false, true).await
    }

    async fn launch(config: ServerConfig, http: bool, with_rest: bool) -> Running {
        let mut server = tokio::task::spawn_blocking(move || Server::load(config))
            .await
            .unwrap()
            .unwrap();
        let (mut page, mut metrics) = (None, None);
        if http || with_rest {
            let listener = serve::server::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            page = Some(listener.local_addr().unwrap());
            server = server.with_http(listener);
            let listener = serve::server::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            metrics = Some(listener.local_addr().unwrap());
            server = server.with_metrics(listener);
        }
        let mut rest = None;
        if with_rest {
            let listener = serve::server::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            rest = Some(listener.local_addr().unwrap());
            server = server.with_rest(listener);
        }
        let listener = serve::server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            page,
            metrics,
            rest,
            stop,
            task,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}
