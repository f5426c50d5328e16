//! The Open Inference Protocol (KServe v2), so the clients and tools of Triton and KServe can
//! ask for music: over gRPC on the same port as `pianoroll.v1.Composer` ([`grpc`]) and over
//! HTTP/JSON on `serve --rest ADDR` ([`rest`]). This module is the protocol itself, whatever
//! carries it: the tensors a model takes and gives, their checks, and the answers to the
//! metadata, configuration, statistics and repository calls. The two transports only translate
//! their messages to and from these values, so a rule has one home.
//!
//! Every model the server runs is a v2 model of the same name and version "1". One inference
//! composes one piece, as `Compose` does, on the same batchers, slots and limits
//! ([`crate::engine`]):
//!
//! | input | datatype | shape | |
//! |---|---|---|---|
//! | `frames` | INT32 | [1] | frames to generate after the primer (required, except with a melody: then as many as the melody has) |
//! | `seed` | UINT64 | [1] | the request's random seed (default 0) |
//! | `temperature` | FP32 | [1] | sampling temperature (default 1) |
//! | `tempo_bpm` | FP64 | [1] | tempo of the MIDI file (default: the primer's, else 120) |
//! | `primer_midi` | BYTES | [1] | a Standard MIDI File to continue (default: silence) |
//! | `key` | BYTES | [1] | the piece's key, UTF-8: "D", "F# minor" (default: the primer's, else C major) |
//! | `meter` | BYTES | [1] | its time signature, UTF-8: "6/8" (default: the primer's, else 4/4) |
//! | `melody_midi` | BYTES | [1] | a Standard MIDI File whose highest line to harmonise, instead of a primer (as `pianoroll.v1`'s `Harmonize`) |
//!
//! | output | datatype | shape | |
//! |---|---|---|---|
//! | `roll` | UINT8 | [frames, keys] | the generated frames in the piece's key, 1 where a key sounds |
//! | `midi` | BYTES | [1] | the primer and the generated frames as a MIDI file, with the piece's tempo, key and time signature |
//!
//! A wrong datatype, shape, name or missing input is refused (INVALID_ARGUMENT, HTTP 400)
//! naming the tensor. Outputs are produced in the protocol's raw layout (little-endian
//! elements; a BYTES element as a 4-byte length and its bytes), which gRPC sends as they are
//! and REST sends as binary data or converts to JSON.

pub mod grpc;
pub mod rest;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use proto::inference::model_metadata_response::TensorMetadata;
use proto::inference::repository_index_response::ModelIndex;
use proto::inference::{
    DataType, InferStatistics, InferTensorContents, ModelConfig, ModelInput, ModelMetadataResponse,
    ModelOutput, ModelStatistics, ServerMetadataResponse, StatisticDuration,
};
use tonic::Status;

use crate::engine::{Engine, Generation, Melody, Primer, parse_key, parse_meter};
use crate::registry::LoadedModel;

/// The one version of every model.
pub const VERSION: &str = "1";

/// What `ModelMetadata` and `ModelConfig` say the models run on.
const PLATFORM: &str = "pianoroll";

/// The metrics' method label of an inference, whichever transport carried it.
const METHOD: &str = "ModelInfer";

/// A tensor's data type, as the protocol names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    Int32,
    Uint64,
    Fp32,
    Fp64,
    Bytes,
    Uint8,
}

impl Datatype {
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Int32 => "INT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bytes => "BYTES",
            Datatype::Uint8 => "UINT8",
        }
    }

    /// The same type in Triton's model configuration.
    fn config_type(self) -> DataType {
        match self {
            Datatype::Int32 => DataType::TypeInt32,
            Datatype::Uint64 => DataType::TypeUint64,
            Datatype::Fp32 => DataType::TypeFp32,
            Datatype::Fp64 => DataType::TypeFp64,
            Datatype::Bytes => DataType::TypeString,
            Datatype::Uint8 => DataType::TypeUint8,
        }
    }
}

/// The inputs, in the order `ModelMetadata` lists them.
pub const INPUTS: [(&str, Datatype); 8] = [
    ("frames", Datatype::Int32),
    ("seed", Datatype::Uint64),
    ("temperature", Datatype::Fp32),
    ("tempo_bpm", Datatype::Fp64),
    ("primer_midi", Datatype::Bytes),
    ("key", Datatype::Bytes),
    ("meter", Datatype::Bytes),
    ("melody_midi", Datatype::Bytes),
];

/// The inputs that are not text when they come as JSON (MIDI files: base64).
pub const MIDI_INPUTS: [&str; 2] = ["primer_midi", "melody_midi"];

pub const ROLL: &str = "roll";
pub const MIDI: &str = "midi";
/// The outputs, in the order they are sent when none are named.
pub const OUTPUTS: [&str; 2] = [ROLL, MIDI];

/// One input tensor as a transport received it.
#[derive(Clone, Debug)]
pub struct InputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

/// An input tensor's elements.
#[derive(Clone, Debug)]
pub enum TensorData {
    /// The raw layout: little-endian elements, BYTES elements each after a 4-byte length
    /// (gRPC's `raw_input_contents`, REST's binary data).
    Raw(Vec<u8>),
    /// Typed elements (gRPC's `contents`, REST's JSON `data`).
    Typed(InferTensorContents),
}

/// One inference request.
#[derive(Clone, Debug, Default)]
pub struct InferRequest {
    pub model_name: String,
    pub model_version: String,
    pub id: String,
    pub inputs: Vec<InputTensor>,
    /// The outputs asked for, in order (none: all of them).
    pub outputs: Vec<String>,
}

/// One output tensor, its elements in the raw layout.
#[derive(Clone, Debug)]
pub struct OutputTensor {
    pub name: &'static str,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
    pub raw: Vec<u8>,
}

/// An inference's answer.
#[derive(Clone, Debug)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: String,
    pub outputs: Vec<OutputTensor>,
}

/// One input's value.
enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
    Bytes(Vec<u8>),
}

/// A model's inferences so far: those that succeeded and those that failed, with their
/// durations, and when the last one succeeded.
#[derive(Clone, Copy, Debug, Default)]
struct Inferences {
    success: (u64, Duration),
    fail: (u64, Duration),
    last_success: Option<SystemTime>,
}

/// The protocol over the generation core. Cheap to clone; both transports share one, so their
/// statistics are one.
#[derive(Clone)]
pub struct V2 {
    engine: Engine,
    /// Model folders that did not load, with why: the repository index lists them.
    broken: Arc<[(String, String)]>,
    inferences: Arc<Mutex<BTreeMap<String, Inferences>>>,
}

impl V2 {
    /// The protocol over `engine`; `broken` are (folder name, reason) of the folders that did
    /// not load.
    pub fn new(engine: Engine, broken: Vec<(String, String)>) -> V2 {
        V2 {
            engine,
            broken: broken.into(),
            inferences: Arc::default(),
        }
    }

    /// The model `name` at `version` ("" or "1").
    pub fn model(&self, name: &str, version: &str) -> Result<&LoadedModel, Status> {
        let model = self.engine.model(name)?;
        if !(version.is_empty() || version == VERSION) {
            return Err(Status::not_found(format!(
                "model_version: {name:?} has version {VERSION} only, not {version:?}"
            )));
        }
        Ok(model)
    }

    /// Run one inference: compose one piece. Counted in the metrics and the model's
    /// statistics.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse, Status> {
        let started = Instant::now();
        let model = request.model_name.clone();
        let result = self.compose(request).await;
        self.record(&model, started, result)
    }

    /// Count a request for `model` that its transport refused before it became an
    /// [`InferRequest`], as [`V2::infer`] counts its failures.
    pub fn refused(&self, model: &str, status: Status) -> Status {
        self.record::<()>(model, Instant::now(), Err(status))
            .unwrap_err()
    }

    fn record<T>(
        &self,
        model: &str,
        started: Instant,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        if self.engine.models().contains_key(model) {
            let mut inferences = self.inferences.lock().unwrap_or_else(|p| p.into_inner());
            let entry = inferences.entry(model.to_owned()).or_default();
            let (count, total) = if result.is_ok() {
                entry.last_success = Some(SystemTime::now());
                &mut entry.success
            } else {
                &mut entry.fail
            };
            *count += 1;
            *total += started.elapsed();
        }
        self.engine.counted(METHOD, model, result)
    }

    async fn compose(&self, request: InferRequest) -> Result<InferResponse, Status> {
        let model = self.model(&request.model_name, &request.model_version)?;
        let wanted = requested_outputs(&request.outputs)?;
        let mut values = read_inputs(&request.inputs)?;
        let melody = match values.remove("melody_midi") {
            Some(Value::Bytes(midi)) => Some(Melody::Midi(midi)),
            _ => None,
        };
        let frames = match values.remove("frames") {
            Some(Value::Int(n)) => u32::try_from(n).map_err(|_| {
                Status::invalid_argument(format!("input frames: must be at least 1, got {n}"))
            })?,
            // A melody says how long the piece is.
            _ if melody.is_some() => 0,
            _ => {
                return Err(Status::invalid_argument(
                    "input frames: missing (INT32 [1], the frames to generate)",
                ));
            }
        };
        let generation = Generation {
            model: model.name.clone(),
            frames,
            temperature: match values.remove("temperature") {
                Some(Value::Float(t)) => Some(t as f32),
                _ => None,
            },
            seed: match values.remove("seed") {
                Some(Value::Uint(s)) => s,
                _ => 0,
            },
            primer: match values.remove("primer_midi") {
                Some(Value::Bytes(midi)) => Primer::Midi(midi),
                _ => Primer::None,
            },
            tempo_bpm: match values.remove("tempo_bpm") {
                Some(Value::Float(t)) => Some(t),
                _ => None,
            },
            key: parse_key("input key", &text(&mut values, "key")?)?,
            meter: parse_meter("input meter", &text(&mut values, "meter")?)?,
            chunk_frames: 0,
            melody,
        };
        let piece = self.engine.start(&generation)?.finish().await?;
        let keys = model.card.pitch_count;
        let outputs = wanted
            .into_iter()
            .map(|name| {
                if name == ROLL {
                    let generated = piece.generated();
                    OutputTensor {
                        name: ROLL,
                        datatype: Datatype::Uint8,
                        shape: vec![generated.len() as i64, keys as i64],
                        raw: generated
                            .iter()
                            .flat_map(|f| (0..keys).map(move |k| u8::from(f.contains(k))))
                            .collect(),
                    }
                } else {
                    OutputTensor {
                        name: MIDI,
                        datatype: Datatype::Bytes,
                        shape: vec![1],
                        raw: bytes_element(&piece.midi()),
                    }
                }
            })
            .collect();
        Ok(InferResponse {
            model_name: model.name.clone(),
            model_version: VERSION.to_owned(),
            id: request.id,
            outputs,
        })
    }

    pub fn server_metadata(&self) -> ServerMetadataResponse {
        ServerMetadataResponse {
            name: "pianoroll".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: vec![
                "model_configuration".to_owned(),
                "statistics".to_owned(),
                "model_repository".to_owned(),
                "binary_tensor_data".to_owned(),
            ],
        }
    }

    pub fn metadata(&self, name: &str, version: &str) -> Result<ModelMetadataResponse, Status> {
        let model = self.model(name, version)?;
        let keys = model.card.pitch_count as i64;
        let tensor = |name: &str, datatype: Datatype, shape: &[i64]| TensorMetadata {
            name: name.to_owned(),
            datatype: datatype.name().to_owned(),
            shape: shape.to_vec(),
        };
        Ok(ModelMetadataResponse {
            name: model.name.clone(),
            versions: vec![VERSION.to_owned()],
            platform: PLATFORM.to_owned(),
            inputs: INPUTS
                .iter()
                .map(|&(name, datatype)| tensor(name, datatype, &[1]))
                .collect(),
            outputs: vec![
                tensor(ROLL, Datatype::Uint8, &[-1, keys]),
                tensor(MIDI, Datatype::Bytes, &[1]),
            ],
        })
    }

    /// The model's configuration as Triton describes one: its tensors, and a
    /// `max_batch_size` of 0 because a client sends one piece's request at a time (the server
    /// batches the generations of all requests itself).
    pub fn config(&self, name: &str, version: &str) -> Result<ModelConfig, Status> {
        let model = self.model(name, version)?;
        let keys = model.card.pitch_count as i64;
        Ok(ModelConfig {
            name: model.name.clone(),
            platform: PLATFORM.to_owned(),
            backend: String::new(),
            max_batch_size: 0,
            input: INPUTS
                .iter()
                .map(|&(name, datatype)| ModelInput {
                    name: name.to_owned(),
                    data_type: datatype.config_type().into(),
                    dims: vec![1],
                })
                .collect(),
            output: vec![
                ModelOutput {
                    name: ROLL.to_owned(),
                    data_type: Datatype::Uint8.config_type().into(),
                    dims: vec![-1, keys],
                },
                ModelOutput {
                    name: MIDI.to_owned(),
                    data_type: Datatype::Bytes.config_type().into(),
                    dims: vec![1],
                },
            ],
        })
    }

    /// Statistics of the model `name` (every model when `name` is empty). `success` and `fail`
    /// count the model's inferences over this protocol (both transports) with their whole
    /// durations; `execution_count` and `compute_infer` count its batcher's steps (one frame of
    /// every generation in the batch, from all APIs) and their durations. The server does not
    /// time queueing or tensor copies apart, so `queue`, `compute_input` and `compute_output`
    /// stay zero.
    pub fn statistics(&self, name: &str, version: &str) -> Result<Vec<ModelStatistics>, Status> {
        let models: Vec<&LoadedModel> = if name.is_empty() {
            self.engine.models().values().collect()
        } else {
            vec![self.model(name, version)?]
        };
        let inferences = self
            .inferences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let duration = |(count, total): (u64, Duration)| StatisticDuration {
            count,
            ns: u64::try_from(total.as_nanos()).unwrap_or(u64::MAX),
        };
        Ok(models
            .into_iter()
            .map(|model| {
                let done = inferences.get(&model.name).copied().unwrap_or_default();
                let (steps, step_seconds) = model.batcher.stats().step_seconds.totals();
                ModelStatistics {
                    name: model.name.clone(),
                    version: VERSION.to_owned(),
                    last_inference: done.last_success.map_or(0, |t| {
                        t.duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64)
                    }),
                    inference_count: done.success.0,
                    execution_count: steps,
                    inference_stats: Some(InferStatistics {
                        success: Some(duration(done.success)),
                        fail: Some(duration(done.fail)),
                        queue: Some(StatisticDuration::default()),
                        compute_input: Some(StatisticDuration::default()),
                        compute_infer: Some(duration((
                            steps,
                            Duration::from_secs_f64(step_seconds.max(0.0)),
                        ))),
                        compute_output: Some(StatisticDuration::default()),
                    }),
                }
            })
            .collect())
    }

    /// The models this server was started with: those it serves (READY) and, unless
    /// `ready_only`, the folders that did not load (UNAVAILABLE, with the reason). The
    /// repository is fixed at start: there is no load or unload.
    pub fn repository_index(&self, ready_only: bool) -> Vec<ModelIndex> {
        let ready = self.engine.models().keys().map(|name| ModelIndex {
            name: name.clone(),
            version: VERSION.to_owned(),
            state: "READY".to_owned(),
            reason: String::new(),
        });
        let broken = self.broken.iter().map(|(name, reason)| ModelIndex {
            name: name.clone(),
            version: VERSION.to_owned(),
            state: "UNAVAILABLE".to_owned(),
            reason: reason.clone(),
        });
        let mut index: Vec<ModelIndex> = if ready_only {
            ready.collect()
        } else {
            ready.chain(broken).collect()
        };
        index.sort_by(|a, b| a.name.cmp(&b.name));
        index
    }
}

/// One BYTES element in the raw layout: its length (u32, little-endian), then its bytes.
pub fn bytes_element(bytes: &[u8]) -> Vec<u8> {
    let mut raw = (bytes.len() as u32).to_le_bytes().to_vec();
    raw.extend_from_slice(bytes);
    raw
}

/// A BYTES input holding text ("" when it is not given).
fn text(values: &mut HashMap<&'static str, Value>, name: &str) -> Result<String, Status> {
    match values.remove(name) {
        Some(Value::Bytes(bytes)) => String::from_utf8(bytes)
            .map_err(|_| Status::invalid_argument(format!("input {name}: not UTF-8 text"))),
        _ => Ok(String::new()),
    }
}

/// The inputs by name, each checked against [`INPUTS`].
fn read_inputs(inputs: &[InputTensor]) -> Result<HashMap<&'static str, Value>, Status> {
    let mut values = HashMap::new();
    for tensor in inputs {
        let Some(&(name, datatype)) = INPUTS.iter().find(|(n, _)| *n == tensor.name) else {
            let known: Vec<&str> = INPUTS.iter().map(|(n, _)| *n).collect();
            return Err(Status::invalid_argument(format!(
                "input {:?}: not an input of this model (it takes {})",
                tensor.name,
                known.join(", ")
            )));
        };
        if tensor.datatype != datatype.name() {
            return Err(Status::invalid_argument(format!(
                "input {name}: datatype {:?}, must be {}",
                tensor.datatype,
                datatype.name()
            )));
        }
        if tensor.shape != [1] {
            return Err(Status::invalid_argument(format!(
                "input {name}: shape {:?}, must be [1]",
                tensor.shape
            )));
        }
        let value = match &tensor.data {
            TensorData::Raw(bytes) => raw_value(name, datatype, bytes)?,
            TensorData::Typed(contents) => typed_value(name, datatype, contents)?,
        };
        if values.insert(name, value).is_some() {
            return Err(Status::invalid_argument(format!(
                "input {name}: given twice"
            )));
        }
    }
    Ok(values)
}

/// A one-element tensor's value from its raw little-endian bytes.
fn raw_value(name: &str, datatype: Datatype, bytes: &[u8]) -> Result<Value, Status> {
    let wrong_size = |expected: usize| {
        Status::invalid_argument(format!(
            "input {name}: {} raw bytes, one {} element is {expected}",
            bytes.len(),
            datatype.name()
        ))
    };
    Ok(match datatype {
        Datatype::Int32 => Value::Int(i64::from(i32::from_le_bytes(
            bytes.try_into().map_err(|_| wrong_size(4))?,
        ))),
        Datatype::Uint64 => Value::Uint(u64::from_le_bytes(
            bytes.try_into().map_err(|_| wrong_size(8))?,
        )),
        Datatype::Fp32 => Value::Float(f64::from(f32::from_le_bytes(
            bytes.try_into().map_err(|_| wrong_size(4))?,
        ))),
        Datatype::Fp64 => Value::Float(f64::from_le_bytes(
            bytes.try_into().map_err(|_| wrong_size(8))?,
        )),
        Datatype::Uint8 => unreachable!("UINT8 is an output's type, no input's"),
        Datatype::Bytes => {
            let length = bytes
                .get(..4)
                .map(|l| u32::from_le_bytes(l.try_into().expect("four bytes")) as usize);
            match length {
                Some(length) if bytes.len() == 4 + length => Value::Bytes(bytes[4..].to_vec()),
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "input {name}: raw BYTES must be one element: a 4-byte little-endian \
                         length, then that many bytes ({} bytes given)",
                        bytes.len()
                    )));
                }
            }
        }
    })
}

/// A one-element tensor's value from its typed contents.
fn typed_value(
    name: &str,
    datatype: Datatype,
    contents: &InferTensorContents,
) -> Result<Value, Status> {
    let one = |count: usize, field: &str| {
        if count == 1 {
            Ok(())
        } else {
            Err(Status::invalid_argument(format!(
                "input {name}: contents.{field} has {count} elements, the shape [1] needs 1"
            )))
        }
    };
    Ok(match datatype {
        Datatype::Int32 => {
            one(contents.int_contents.len(), "int_contents")?;
            Value::Int(i64::from(contents.int_contents[0]))
        }
        Datatype::Uint64 => {
            one(contents.uint64_contents.len(), "uint64_contents")?;
            Value::Uint(contents.uint64_contents[0])
        }
        Datatype::Fp32 => {
            one(contents.fp32_contents.len(), "fp32_contents")?;
            Value::Float(f64::from(contents.fp32_contents[0]))
        }
        Datatype::Fp64 => {
            one(contents.fp64_contents.len(), "fp64_contents")?;
            Value::Float(contents.fp64_contents[0])
        }
        Datatype::Uint8 => unreachable!("UINT8 is an output's type, no input's"),
        Datatype::Bytes => {
            one(contents.bytes_contents.len(), "bytes_contents")?;
            Value::Bytes(contents.bytes_contents[0].clone())
        }
    })
}

/// The outputs to send, in the order asked (all of them when none are named).
fn requested_outputs(names: &[String]) -> Result<Vec<&'static str>, Status> {
    if names.is_empty() {
        return Ok(OUTPUTS.to_vec());
    }
    let mut wanted = Vec::new();
    for asked in names {
        let name = OUTPUTS.into_iter().find(|n| n == asked).ok_or_else(|| {
            Status::invalid_argument(format!(
                "output {asked:?}: not an output of this model (it has {})",
                OUTPUTS.join(", ")
            ))
        })?;
        if wanted.contains(&name) {
            return Err(Status::invalid_argument(format!(
                "output {name}: asked for twice"
            )));
        }
        wanted.push(name);
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, datatype: &str, data: TensorData) -> InputTensor {
        InputTensor {
            name: name.to_owned(),
            datatype: datatype.to_owned(),
            shape: vec![1],
            data,
        }
    }

    fn error(inputs: &[InputTensor]) -> String {
        match read_inputs(inputs) {
            Ok(_) => panic!("accepted"),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::InvalidArgument);
                status.message().to_owned()
            }
        }
    }

    #[test]
    fn raw_and_typed_inputs_read_the_same() {
        let raw = [
            input(
                "frames",
                "INT32",
                TensorData::Raw(7i32.to_le_bytes().to_vec()),
            ),
            input(
                "seed",
                "UINT64",
                TensorData::Raw(9u64.to_le_bytes().to_vec()),
            ),
            input(
                "primer_midi",
                "BYTES",
                TensorData::Raw(bytes_element(b"MThd")),
            ),
        ];
        let typed = [
            input(
                "frames",
                "INT32",
                TensorData::Typed(InferTensorContents {
                    int_contents: vec![7],
                    ..Default::default()
                }),
            ),
            input(
                "seed",
                "UINT64",
                TensorData::Typed(InferTensorContents {
                    uint64_contents: vec![9],
                    ..Default::default()
                }),
            ),
            input(
                "primer_midi",
                "BYTES",
                TensorData::Typed(InferTensorContents {
                    bytes_contents: vec![b"MThd".to_vec()],
                    ..Default::default()
                }),
            ),
        ];
        for inputs in [raw, typed] {
            let values = read_inputs(&inputs).unwrap();
            assert!(matches!(values["frames"], Value::Int(7)));
            assert!(matches!(values["seed"], Value::Uint(9)));
            assert!(matches!(&values["primer_midi"], Value::Bytes(b) if b == b"MThd"));
        }
    }

    #[test]
    fn bad_tensors_are_named() {
        let four = || TensorData::Raw(7i32.to_le_bytes().to_vec());
        assert!(error(&[input("frames", "FP32", four())]).contains("frames: datatype"));
        let mut two = input("frames", "INT32", four());
        two.shape = vec![2];
        assert!(error(&[two]).contains("frames: shape [2]"));
        let short = input("frames", "INT32", TensorData::Raw(vec![1, 2]));
        assert!(error(&[short]).contains("2 raw bytes"));
        let bad_bytes = input("primer_midi", "BYTES", TensorData::Raw(vec![9, 0, 0, 0, 1]));
        assert!(error(&[bad_bytes]).contains("primer_midi: raw BYTES"));
        let empty = || TensorData::Typed(InferTensorContents::default());
        assert!(error(&[input("tempo", "FP64", empty())]).contains("\"tempo\": not an input"));
        assert!(
            error(&[input("frames", "INT32", empty())]).contains("int_contents has 0 elements")
        );
        let twice = [
            input("frames", "INT32", four()),
            input("frames", "INT32", four()),
        ];
        assert!(error(&twice).contains("given twice"));
    }

    #[test]
    fn outputs_are_named_once() {
        assert_eq!(requested_outputs(&[]).unwrap(), OUTPUTS.to_vec());
        assert_eq!(requested_outputs(&["midi".into()]).unwrap(), vec![MIDI]);
        let twice = requested_outputs(&["roll".into(), "roll".into()]).unwrap_err();
        assert!(twice.message().contains("asked for twice"));
        let unknown = requested_outputs(&["audio".into()]).unwrap_err();
        assert!(unknown.message().contains("\"audio\": not an output"));
    }
}
