//! The Open Inference Protocol over HTTP/JSON (`serve --rest ADDR`), as KServe's and Triton's
//! HTTP clients speak it, with Triton's binary tensor extension: a translation onto
//! [`super::V2`], so REST runs on the same batchers, limits, tokens and metrics as gRPC.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v2/health/live`, `GET /v2/health/ready` | 200 (open, for probes) |
//! | `GET /v2` | the server's metadata |
//! | `GET /v2/models/M[/versions/V]` | the model's metadata |
//! | `GET /v2/models/M[/versions/V]/ready` | 200 when ready, else 404 |
//! | `POST /v2/models/M[/versions/V]/infer` | one piece (below) |
//! | `GET /v2/models/M[/versions/V]/config` | the model's configuration (Triton) |
//! | `GET /v2/models[/M[/versions/V]]/stats` | statistics (Triton) |
//! | `POST /v2/repository/index`, body `{"ready": bool}` or nothing | the models and their state (Triton) |
//!
//! An inference request is JSON, optionally followed by binary tensor data (the header
//! `Inference-Header-Content-Length` gives the JSON's length; an input with the parameter
//! `binary_data_size` takes that many of the following bytes, in the raw layout). JSON `data`
//! may be flat or nested; BYTES elements in JSON are text (`key`, `meter`), except the MIDI
//! files (`primer_midi`, `melody_midi`), which are base64.
//! An output is sent as binary data when its parameter `binary_data` (or the request's
//! `binary_data_output`) is true, else as JSON `data` (the MIDI file as base64, the output's
//! parameters saying `"encoding": "base64"`). Errors are JSON `{"error": "..."}` with the
//! status of their gRPC code, as on the page's API.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proto::inference::{DataType, InferTensorContents, ModelConfig, ModelStatistics};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tonic::Status;

use super::{Datatype, InferRequest, InferResponse, InputTensor, OUTPUTS, TensorData, V2};
use crate::auth::RequireToken;
use crate::http::{error_response, json_error, rejected};

/// The header that gives the length of the JSON before a body's binary data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The v2 REST API over `v2`. With a token, everything but the two health probes needs it.
pub fn router(v2: V2, token: RequireToken, max_body_bytes: usize) -> Router {
    let model_routes = |prefix: &str| {
        Router::new()
            .route(prefix, get(model_metadata))
            .route(&format!("{prefix}/ready"), get(model_ready))
            .route(&format!("{prefix}/infer"), post(infer))
            .route(&format!("{prefix}/config"), get(model_config))
            .route(&format!("{prefix}/stats"), get(model_statistics))
    };
    let guarded = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_statistics))
        .route("/v2/repository/index", post(repository_index))
        .merge(model_routes("/v2/models/{model}"))
        .merge(model_routes("/v2/models/{model}/versions/{version}"))
        .layer(axum::middleware::from_fn_with_state(
            token,
            crate::auth::require_token_http,
        ));
    Router::new()
        .route("/v2/health/live", get(StatusCode::OK))
        .route("/v2/health/ready", get(StatusCode::OK))
        .merge(guarded)
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such endpoint".to_owned()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not a method of this endpoint"),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(v2)
}

/// The model and version named by the path (no version: the server's choice).
fn model_and_version(path: &HashMap<String, String>) -> (&str, &str) {
    let get = |key: &str| path.get(key).map_or("", String::as_str);
    (get("model"), get("version"))
}

fn answer(result: Result<Value, Status>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(status) => error_response(&status),
    }
}

async fn server_metadata(State(v2): State<V2>) -> Response {
    let metadata = v2.server_metadata();
    axum::Json(json!({
        "name": metadata.name,
        "version": metadata.version,
        "extensions": metadata.extensions,
    }))
    .into_response()
}

async fn model_metadata(
    State(v2): State<V2>,
    Path(path): Path<HashMap<String, String>>,
) -> Response {
    let (model, version) = model_and_version(&path);
    answer(v2.metadata(model, version).map(|metadata| {
        let tensors = |tensors: Vec<proto::inference::model_metadata_response::TensorMetadata>| {
            tensors
                .into_iter()
                .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
                .collect::<Vec<_>>()
        };
        json!({
            "name": metadata.name,
            "versions": metadata.versions,
            "platform": metadata.platform,
            "inputs": tensors(metadata.inputs),
            "outputs": tensors(metadata.outputs),
        })
    }))
}

async fn model_ready(State(v2): State<V2>, Path(path): Path<HashMap<String, String>>) -> Response {
    let (model, version) = model_and_version(&path);
    match v2.model(model, version) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(status) => error_response(&status),
    }
}

async fn model_config(State(v2): State<V2>, Path(path): Path<HashMap<String, String>>) -> Response {
    let (model, version) = model_and_version(&path);
    answer(v2.config(model, version).map(|c| config_json(&c)))
}

/// A model configuration as Triton's HTTP API writes one (protobuf's JSON mapping).
fn config_json(config: &ModelConfig) -> Value {
    let type_name = |t: i32| {
        DataType::try_from(t)
            .unwrap_or(DataType::TypeInvalid)
            .as_str_name()
    };
    json!({
        "name": config.name,
        "platform": config.platform,
        "backend": config.backend,
        "max_batch_size": config.max_batch_size,
        "input": config.input.iter().map(|i| json!({
            "name": i.name, "data_type": type_name(i.data_type), "dims": i.dims,
        })).collect::<Vec<_>>(),
        "output": config.output.iter().map(|o| json!({
            "name": o.name, "data_type": type_name(o.data_type), "dims": o.dims,
        })).collect::<Vec<_>>(),
    })
}

async fn model_statistics(
    State(v2): State<V2>,
    Path(path): Path<HashMap<String, String>>,
) -> Response {
    let (model, version) = model_and_version(&path);
    answer(v2.statistics(model, version).map(statistics_json))
}

async fn all_statistics(State(v2): State<V2>) -> Response {
    answer(v2.statistics("", "").map(statistics_json))
}

fn statistics_json(models: Vec<ModelStatistics>) -> Value {
    let duration = |d: Option<proto::inference::StatisticDuration>| {
        let d = d.unwrap_or_default();
        json!({"count": d.count, "ns": d.ns})
    };
    let model_stats: Vec<Value> = models
        .into_iter()
        .map(|m| {
            let stats = m.inference_stats.unwrap_or_default();
            json!({
                "name": m.name,
                "version": m.version,
                "last_inference": m.last_inference,
                "inference_count": m.inference_count,
                "execution_count": m.execution_count,
                "inference_stats": {
                    "success": duration(stats.success),
                    "fail": duration(stats.fail),
                    "queue": duration(stats.queue),
                    "compute_input": duration(stats.compute_input),
                    "compute_infer": duration(stats.compute_infer),
                    "compute_output": duration(stats.compute_output),
                },
                "batch_stats": [],
            })
        })
        .collect();
    json!({ "model_stats": model_stats })
}

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

async fn repository_index(State(v2): State<V2>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return rejected(rejection),
    };
    let request: IndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return json_error(StatusCode::BAD_REQUEST, format!("request body: {e}"));
            }
        }
    };
    let index: Vec<Value> = v2
        .repository_index(request.ready)
        .into_iter()
        .map(
            |m| json!({"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}),
        )
        .collect();
    axum::Json(index).into_response()
}

/// An inference request's JSON.
#[derive(Deserialize)]
struct RestRequest {
    #[serde(default)]
    id: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<RestInput>,
    #[serde(default)]
    outputs: Vec<RestOutput>,
}

#[derive(Deserialize)]
struct RestInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RestOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn infer(
    State(v2): State<V2>,
    Path(path): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (model, version) = model_and_version(&path);
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            // Counted with the code gRPC gives the same refusal: over the size limit is
            // RESOURCE_EXHAUSTED, anything else a bad argument.
            let message = rejection.to_string();
            let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Status::resource_exhausted(message)
            } else {
                Status::invalid_argument(message)
            };
            v2.refused(model, status);
            return rejected(rejection);
        }
    };
    let (request, binary_outputs) = match read_request(model, version, &headers, &body) {
        Ok(read) => read,
        Err(status) => return error_response(&v2.refused(model, status)),
    };
    match v2.infer(request).await {
        Ok(response) => write_response(response, &binary_outputs),
        Err(status) => error_response(&status),
    }
}

/// The protocol's request from the body, and which outputs go as binary data.
fn read_request(
    model: &str,
    version: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(InferRequest, Vec<&'static str>), Status> {
    let json_length = match headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n <= body.len())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "header {HEADER_LENGTH}: {value:?} is not a length within the body's {} bytes",
                    body.len()
                ))
            })?,
    };
    let (json_part, mut binary) = body.split_at(json_length);
    let request: RestRequest = serde_json::from_slice(json_part)
        .map_err(|e| Status::invalid_argument(format!("request JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let data = match input.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size.as_u64().map(|s| s as usize).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "input {}: parameter binary_data_size must be a byte count",
                        input.name
                    ))
                })?;
                if size > binary.len() {
                    return Err(Status::invalid_argument(format!(
                        "input {}: binary_data_size {size}, but only {} bytes of binary data \
                         are left",
                        input.name,
                        binary.len()
                    )));
                }
                let (this, rest) = binary.split_at(size);
                binary = rest;
                TensorData::Raw(this.to_vec())
            }
            None => TensorData::Typed(typed_contents(&input)?),
        };
        inputs.push(InputTensor {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(Status::invalid_argument(format!(
            "request body: {} bytes of binary data that no input's binary_data_size claims",
            binary.len()
        )));
    }
    let all_binary = flag(&request.parameters, "binary_data_output").unwrap_or(false);
    let mut binary_outputs = Vec::new();
    for output in &request.outputs {
        if let Some(name) = OUTPUTS.into_iter().find(|n| *n == output.name)
            && flag(&output.parameters, "binary_data").unwrap_or(all_binary)
        {
            binary_outputs.push(name);
        }
    }
    if request.outputs.is_empty() && all_binary {
        binary_outputs = OUTPUTS.to_vec();
    }
    Ok((
        InferRequest {
            model_name: model.to_owned(),
            model_version: version.to_owned(),
            id: request.id,
            inputs,
            outputs: request.outputs.into_iter().map(|o| o.name).collect(),
        },
        binary_outputs,
    ))
}

fn flag(parameters: &Map<String, Value>, name: &str) -> Option<bool> {
    parameters.get(name).and_then(Value::as_bool)
}

/// A JSON input's `data` as typed contents, by its datatype. A datatype no input has gives
/// empty contents: the protocol refuses it by name.
fn typed_contents(input: &RestInput) -> Result<InferTensorContents, Status> {
    let mut elements = Vec::new();
    if let Some(data) = &input.data {
        flatten(data, &mut elements);
    }
    let name = &input.name;
    let bad = |what: &str| Status::invalid_argument(format!("input {name}: data must be {what}"));
    let mut contents = InferTensorContents::default();
    match input.datatype.as_str() {
        "INT32" => {
            for e in elements {
                let n = e.as_i64().and_then(|n| i32::try_from(n).ok());
                contents
                    .int_contents
                    .push(n.ok_or_else(|| bad("32-bit integers"))?);
            }
        }
        "UINT64" => {
            for e in elements {
                contents
                    .uint64_contents
                    .push(e.as_u64().ok_or_else(|| bad("unsigned integers"))?);
            }
        }
        "FP32" => {
            for e in elements {
                let x = e.as_f64().ok_or_else(|| bad("numbers"))?;
                contents.fp32_contents.push(x as f32);
            }
        }
        "FP64" => {
            for e in elements {
                contents
                    .fp64_contents
                    .push(e.as_f64().ok_or_else(|| bad("numbers"))?);
            }
        }
        "BYTES" => {
            // Text, as the protocol carries BYTES in JSON; a MIDI file is not text, so the
            // MIDI inputs (the primer, the melody) come as base64.
            let binary = super::MIDI_INPUTS.contains(&name.as_str());
            for e in elements {
                let text = e.as_str().ok_or_else(|| bad("strings"))?;
                let bytes = if binary {
                    BASE64.decode(text).map_err(|_| {
                        bad(
                            "a base64 string (a MIDI file is not text; or send it as binary \
                             data, with binary_data_size)",
                        )
                    })?
                } else {
                    text.as_bytes().to_vec()
                };
                contents.bytes_contents.push(bytes);
            }
        }
        _ => {}
    }
    Ok(contents)
}

/// The elements of flat or nested JSON `data`, in row-major order.
fn flatten<'a>(data: &'a Value, out: &mut Vec<&'a Value>) {
    match data {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

/// The answer: JSON, then the binary outputs' bytes in order, the header giving the JSON's
/// length when there are any.
fn write_response(response: InferResponse, binary_outputs: &[&str]) -> Response {
    let mut binary = Vec::new();
    let outputs: Vec<Value> = response
        .outputs
        .into_iter()
        .map(|output| {
            let mut tensor = json!({
                "name": output.name,
                "datatype": output.datatype.name(),
                "shape": output.shape,
            });
            if binary_outputs.contains(&output.name) {
                tensor["parameters"] = json!({"binary_data_size": output.raw.len()});
                binary.extend_from_slice(&output.raw);
            } else if output.datatype == Datatype::Bytes {
                // One element: skip its 4-byte length.
                tensor["data"] = json!([BASE64.encode(&output.raw[4..])]);
                tensor["parameters"] = json!({"encoding": "base64"});
            } else {
                tensor["data"] = json!(output.raw);
            }
            tensor
        })
        .collect();
    let mut body = json!({
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    });
    if !response.id.is_empty() {
        body["id"] = json!(response.id);
    }
    let mut bytes = serde_json::to_vec(&body).expect("JSON of plain values");
    if binary.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    }
    let json_length = bytes.len();
    bytes.extend_from_slice(&binary);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                json_length.to_string(),
            ),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &[u8], json_length: Option<usize>) -> Result<InferRequest, Status> {
        let mut headers = HeaderMap::new();
        if let Some(n) = json_length {
            headers.insert(HEADER_LENGTH, n.to_string().parse().unwrap());
        }
        read_request("m", "", &headers, body).map(|(request, _)| request)
    }

    #[test]
    fn json_and_binary_inputs_are_read() {
        let json = br#"{"inputs":[{"name":"frames","shape":[1],"datatype":"INT32","data":[[5]]},
            {"name":"primer_midi","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":8}}]}"#;
        let mut body = json.to_vec();
        body.extend_from_slice(&super::super::bytes_element(b"MThd"));
        let request = read(&body, Some(json.len())).unwrap();
        let TensorData::Typed(frames) = &request.inputs[0].data else {
            panic!("frames read as raw")
        };
        assert_eq!(frames.int_contents, [5]);
        assert!(matches!(&request.inputs[1].data, TensorData::Raw(b) if b[4..] == *b"MThd"));
    }

    #[test]
    fn bad_bodies_are_named() {
        let message = |body: &[u8], n| read(body, n).unwrap_err().message().to_owned();
        assert!(message(b"{", None).contains("request JSON"));
        assert!(message(b"{}", Some(9)).contains(HEADER_LENGTH));
        let too_short = br#"{"inputs":[{"name":"primer_midi","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":99}}]}"#;
        assert!(message(too_short, None).contains("binary_data_size 99"));
        let extra = br#"{"inputs":[]}xyz"#;
        assert!(message(extra, Some(13)).contains("3 bytes of binary data"));
        let text = br#"{"inputs":[{"name":"primer_midi","shape":[1],"datatype":"BYTES","data":["not base64!"]}]}"#;
        assert!(message(text, None).contains("base64"));
        let big =
            br#"{"inputs":[{"name":"frames","shape":[1],"datatype":"INT32","data":[5000000000]}]}"#;
        assert!(message(big, None).contains("32-bit integers"));
    }
}
