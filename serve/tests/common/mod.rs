//! What the server's integration tests share: a server on a free port of 127.0.0.1, in this
//! process, serving the models the repository ships (`models/`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serve::server::{Server, ServerConfig};

/// The models the repository ships.
pub fn shipped_models() -> PathBuf {
    pianoroll_tests::repo_root().join("models")
}

/// A server running until [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), serve::server::ServeError>>,
}

impl Running {
    /// Load `config` and serve it (call inside a Tokio runtime).
    pub async fn start(config: ServerConfig) -> Running {
        let server = tokio::task::spawn_blocking(move || Server::load(config))
            .await
            .unwrap()
            .unwrap();
        let listener = serve::server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async {
            let _ = stopped.await;
        }));
        Running { addr, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}
