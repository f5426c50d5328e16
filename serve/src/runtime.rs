//! ONNX Runtime: finding the shared library, creating sessions on the chosen execution provider.
//!
//! `ort` is built with `load-dynamic`: the library is loaded at run time from, in order,
//! `--onnxruntime PATH`, `$ORT_DYLIB_PATH`, or the path `.cargo/config.toml` gave at build
//! time (the project-local copy `scripts/env.sh` installs from PyPI).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;

/// Where ONNX Runtime was found when this binary was built (see `.cargo/config.toml`).
const BUILD_TIME_LIBRARY: Option<&str> = option_env!("ORT_DYLIB_PATH");

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (give --onnxruntime PATH or set ORT_DYLIB_PATH; \
         scripts/env.sh installs one into .onnxruntime/)"
    )]
    NoLibrary,
    #[error("ONNX Runtime library {path}: {message}")]
    Load { path: String, message: String },
    #[error("--device cuda: ONNX Runtime's CUDA execution provider is not usable here: {0}")]
    NoCuda(String),
    #[error("{path}: ONNX Runtime cannot load this model: {message}")]
    Model { path: String, message: String },
}

/// Which execution provider to run models on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// CUDA when ONNX Runtime can register it, else CPU.
    Auto,
    Cpu,
    /// CUDA or nothing: fail when it cannot be registered.
    Cuda,
}

/// The execution provider a session actually runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Cuda,
    Cpu,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cuda => "CUDA",
            Provider::Cpu => "CPU",
        }
    }
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// Load ONNX Runtime once per process (later calls reuse the first library).
pub fn init(library: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    if let Some(environment) = ENVIRONMENT.get() {
        return Ok(environment);
    }
    let path: PathBuf = library
        .map(Path::to_owned)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .or_else(|| BUILD_TIME_LIBRARY.map(PathBuf::from))
        .ok_or(RuntimeError::NoLibrary)?;
    if !path.is_file() {
        return Err(RuntimeError::Load {
            path: path.display().to_string(),
            message: "no such file".into(),
        });
    }
    let load_error = |message: String| RuntimeError::Load {
        path: path.display().to_string(),
        message,
    };
    let environment = ort::init_from(&path)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("pianoroll-serve")
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| environment))
}

/// A session for `model` (an .onnx file) on `device`, and the provider it got. `threads` is
/// ONNX Runtime's intra-op thread count (0: its default). `cuda_graphs`: on CUDA, let the
/// session capture and replay CUDA graphs ([`crate::step`]'s bucketed way); when ONNX Runtime
/// cannot for this graph, the session is made without them, with a warning.
pub fn session(
    environment: &Environment,
    model: &Path,
    device: Device,
    threads: usize,
    cuda_graphs: bool,
) -> Result<(Session, Provider), RuntimeError> {
    let model_error = |message: String| RuntimeError::Model {
        path: model.display().to_string(),
        message,
    };
    let builder = || -> Result<_, RuntimeError> {
        let mut builder = Session::builder(environment).map_err(|e| model_error(e.to_string()))?;
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| model_error(e.to_string()))?;
        }
        Ok(builder)
    };
    if device != Device::Cpu {
        let cuda = |graphs: bool| {
            ort::ep::CUDA::default()
                .with_cuda_graph(graphs)
                .build()
                .error_on_failure()
        };
        match builder()?.with_execution_providers([cuda(cuda_graphs)]) {
            Ok(mut with_cuda) => {
                let session = match with_cuda.commit_from_file(model) {
                    Ok(session) => session,
                    Err(error) if cuda_graphs => {
                        tracing::warn!(
                            "{}: no CUDA graphs for this model ({error}); each step launches \
                             its kernels one by one",
                            model.display()
                        );
                        builder()?
                            .with_execution_providers([cuda(false)])
                            .map_err(|e| model_error(e.to_string()))?
                            .commit_from_file(model)
                            .map_err(|e| model_error(e.to_string()))?
                    }
                    Err(error) => return Err(model_error(error.to_string())),
                };
                return Ok((session, Provider::Cuda));
            }
            Err(error) if device == Device::Cuda => {
                return Err(RuntimeError::NoCuda(error.to_string()));
            }
            Err(error) => {
                tracing::debug!("CUDA execution provider unavailable ({error}); using CPU");
            }
        }
    }
    let session = builder()?
        .commit_from_file(model)
        .map_err(|e| model_error(e.to_string()))?;
    Ok((session, Provider::Cpu))
}
