//! pianoroll's server: music generation over gRPC (`pianoroll.v1.Composer`) with models
//! exported by `trainer export`, on ONNX Runtime. It never links libtorch: the ONNX file and its
//! `model.json` are the whole interface to the trainer.
//!
//! - [`runtime`]: loading ONNX Runtime, choosing the execution provider.
//! - [`registry`]: the model folders a server runs.
//! - [`batcher`]: continuous batching, one session call per frame for all generations of a model.
//! - [`invariance`]: whether a row's result depends on its batch, measured at load.
//! - [`service`]: the gRPC service, validation and status codes.
//! - [`v2`]: the Open Inference Protocol (KServe v2) beside it, for Triton and KServe clients:
//!   over gRPC on the same port, and over HTTP/JSON (`--rest`).
//! - [`server`]: health, reflection, limits, graceful shutdown.
//! - [`client`]: the `serve generate` command's client.
//! - [`auth`]: optional bearer-token authentication (`--token-file`).
//! - [`http`]: the web page and its HTTP API (`--http`).
//! - [`metrics`]: Prometheus metrics for operators (`--metrics`).

pub mod auth;
pub mod batcher;
pub mod client;
pub mod engine;
pub mod http;
pub mod invariance;
pub mod listen;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod service;
pub mod step;
pub mod v2;
