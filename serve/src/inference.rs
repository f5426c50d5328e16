//! The Open Inference Protocol (KServe v2) over gRPC, on the same port as
//! `pianoroll.v1.Composer`, so the clients and tools of Triton and KServe can ask for music.
//!
//! Every model the server runs is a v2 model of the same name and version "1". One `ModelInfer`
//! composes one piece, as `Compose` does, on the same batchers, slots and limits:
//!
//! | input | datatype | shape | |
//! |---|---|---|---|
//! | `frames` | INT32 | [1] | frames to generate after the primer (required) |
//! | `seed` | UINT64 | [1] | the request's random seed (default 0) |
//! | `temperature` | FP32 | [1] | sampling temperature (default 1) |
//! | `tempo_bpm` | FP64 | [1] | tempo of the MIDI file (default 120) |
//! | `primer_midi` | BYTES | [1] | a Standard MIDI File to continue (default: silence) |
//!
//! | output | datatype | shape | |
//! |---|---|---|---|
//! | `roll` | UINT8 | [frames, keys] | the generated frames, 1 where a key sounds |
//! | `midi` | BYTES | [1] | the primer and the generated frames as a MIDI file |
//!
//! Tensors may come in `raw_input_contents` or in typed `contents`; outputs are sent raw, as
//! Triton sends them. A wrong datatype, shape, name or missing input gets INVALID_ARGUMENT
//! naming the tensor.

use std::collections::HashMap;

use proto::inference::grpc_inference_service_server::GrpcInferenceService;
use proto::inference::model_infer_request::InferInputTensor;
use proto::inference::model_infer_response::InferOutputTensor;
use proto::inference::model_metadata_response::TensorMetadata;
use proto::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse,
};
use tonic::{Request, Response, Status};

use crate::engine::{Engine, Generation, Primer};
use crate::registry::LoadedModel;

/// The fully qualified name of the service.
pub const SERVICE_NAME: &str = "inference.GRPCInferenceService";

/// The one version of every model.
const VERSION: &str = "1";

/// What `ModelMetadata` says the models run on.
const PLATFORM: &str = "pianoroll";

/// A tensor's data type, as the protocol names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Datatype {
    Int32,
    Uint64,
    Fp32,
    Fp64,
    Bytes,
    Uint8,
}

impl Datatype {
    fn name(self) -> &'static str {
        match self {
            Datatype::Int32 => "INT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bytes => "BYTES",
            Datatype::Uint8 => "UINT8",
        }
    }
}

/// The inputs, in the order `ModelMetadata` lists them.
const INPUTS: [(&str, Datatype); 5] = [
    ("frames", Datatype::Int32),
    ("seed", Datatype::Uint64),
    ("temperature", Datatype::Fp32),
    ("tempo_bpm", Datatype::Fp64),
    ("primer_midi", Datatype::Bytes),
];

const ROLL: &str = "roll";
const MIDI: &str = "midi";

/// One scalar input's value.
enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
    Bytes(Vec<u8>),
}

#[derive(Clone)]
pub struct InferenceService {
    engine: Engine,
}

impl InferenceService {
    pub fn new(engine: Engine) -> InferenceService {
        InferenceService { engine }
    }

    /// The model `name` at `version` ("" or "1").
    fn model(&self, name: &str, version: &str) -> Result<&LoadedModel, Status> {
        let model = self.engine.model(name)?;
        if !(version.is_empty() || version == VERSION) {
            return Err(Status::not_found(format!(
                "model_version: {name:?} has version {VERSION} only, not {version:?}"
            )));
        }
        Ok(model)
    }

    async fn infer(&self, request: ModelInferRequest) -> Result<ModelInferResponse, Status> {
        let model = self.model(&request.model_name, &request.model_version)?;
        let mut values = read_inputs(&request)?;
        let wanted = requested_outputs(&request)?;
        let frames = match values.remove("frames") {
            Some(Value::Int(n)) => u32::try_from(n).map_err(|_| {
                Status::invalid_argument(format!("input frames: must be at least 1, got {n}"))
            })?,
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
            chunk_frames: 0,
        };
        let piece = self.engine.start(&generation)?.finish().await?;
        let keys = model.card.pitch_count;
        let mut outputs = Vec::new();
        let mut raw = Vec::new();
        for name in wanted {
            if name == ROLL {
                let generated = piece.generated();
                outputs.push(output(ROLL, Datatype::Uint8, &[generated.len(), keys]));
                raw.push(
                    generated
                        .iter()
                        .flat_map(|f| (0..keys).map(move |k| u8::from(f.contains(k))))
                        .collect(),
                );
            } else {
                outputs.push(output(MIDI, Datatype::Bytes, &[1]));
                raw.push(bytes_element(&piece.midi(generation.tempo_bpm)));
            }
        }
        Ok(ModelInferResponse {
            model_name: model.name.clone(),
            model_version: VERSION.to_owned(),
            id: request.id,
            parameters: HashMap::new(),
            outputs,
            raw_output_contents: raw,
        })
    }
}

fn output(name: &str, datatype: Datatype, shape: &[usize]) -> InferOutputTensor {
    InferOutputTensor {
        name: name.to_owned(),
        datatype: datatype.name().to_owned(),
        shape: shape.iter().map(|&d| d as i64).collect(),
        parameters: HashMap::new(),
        contents: None,
    }
}

/// One BYTES element in the raw layout: its length (u32, little-endian), then its bytes.
fn bytes_element(bytes: &[u8]) -> Vec<u8> {
    let mut raw = (bytes.len() as u32).to_le_bytes().to_vec();
    raw.extend_from_slice(bytes);
    raw
}

/// The request's inputs by name, each checked against [`INPUTS`].
fn read_inputs(request: &ModelInferRequest) -> Result<HashMap<&'static str, Value>, Status> {
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(Status::invalid_argument(format!(
            "raw_input_contents: {} entries for {} inputs (one each, or none)",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut values = HashMap::new();
    for (i, tensor) in request.inputs.iter().enumerate() {
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
        let value = match raw.get(i) {
            Some(bytes) => raw_value(name, datatype, bytes)?,
            None => typed_value(name, datatype, tensor)?,
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
fn typed_value(name: &str, datatype: Datatype, tensor: &InferInputTensor) -> Result<Value, Status> {
    let contents = tensor.contents.clone().unwrap_or_default();
    let InferTensorContents {
        int_contents,
        uint64_contents,
        fp32_contents,
        fp64_contents,
        bytes_contents,
        ..
    } = contents;
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
            one(int_contents.len(), "int_contents")?;
            Value::Int(i64::from(int_contents[0]))
        }
        Datatype::Uint64 => {
            one(uint64_contents.len(), "uint64_contents")?;
            Value::Uint(uint64_contents[0])
        }
        Datatype::Fp32 => {
            one(fp32_contents.len(), "fp32_contents")?;
            Value::Float(f64::from(fp32_contents[0]))
        }
        Datatype::Fp64 => {
            one(fp64_contents.len(), "fp64_contents")?;
            Value::Float(fp64_contents[0])
        }
        Datatype::Uint8 => unreachable!("UINT8 is an output's type, no input's"),
        Datatype::Bytes => {
            one(bytes_contents.len(), "bytes_contents")?;
            Value::Bytes(bytes_contents.into_iter().next().expect("one element"))
        }
    })
}

/// The outputs to send, in the order asked (all of them when none are named).
fn requested_outputs(request: &ModelInferRequest) -> Result<Vec<&'static str>, Status> {
    if request.outputs.is_empty() {
        return Ok(vec![ROLL, MIDI]);
    }
    let mut wanted = Vec::new();
    for output in &request.outputs {
        let name = [ROLL, MIDI]
            .into_iter()
            .find(|n| *n == output.name)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "output {:?}: not an output of this model (it has roll, midi)",
                    output.name
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

fn tensor(name: &str, datatype: Datatype, shape: &[i64]) -> TensorMetadata {
    TensorMetadata {
        name: name.to_owned(),
        datatype: datatype.name().to_owned(),
        shape: shape.to_vec(),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        // A server answers only once its models are loaded.
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = self.model(&request.name, &request.version).is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "pianoroll".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let model = self.model(&request.name, &request.version)?;
        let keys = model.card.pitch_count as i64;
        Ok(Response::new(ModelMetadataResponse {
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
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        let model = request.model_name.clone();
        let result = self.infer(request).await.map(Response::new);
        self.engine.counted("ModelInfer", &model, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, datatype: &str, shape: Vec<i64>) -> InferInputTensor {
        InferInputTensor {
            name: name.to_owned(),
            datatype: datatype.to_owned(),
            shape,
            parameters: HashMap::new(),
            contents: None,
        }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".to_owned(),
            inputs,
            raw_input_contents: raw,
            ..Default::default()
        }
    }

    fn error(request: &ModelInferRequest) -> String {
        match read_inputs(request) {
            Ok(_) => panic!("accepted"),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::InvalidArgument);
                status.message().to_owned()
            }
        }
    }

    #[test]
    fn raw_and_typed_inputs_read_the_same() {
        let raw = request(
            vec![
                input("frames", "INT32", vec![1]),
                input("seed", "UINT64", vec![1]),
                input("primer_midi", "BYTES", vec![1]),
            ],
            vec![
                7i32.to_le_bytes().to_vec(),
                9u64.to_le_bytes().to_vec(),
                bytes_element(b"MThd"),
            ],
        );
        let mut typed = request(raw.inputs.clone(), Vec::new());
        typed.inputs[0].contents = Some(InferTensorContents {
            int_contents: vec![7],
            ..Default::default()
        });
        typed.inputs[1].contents = Some(InferTensorContents {
            uint64_contents: vec![9],
            ..Default::default()
        });
        typed.inputs[2].contents = Some(InferTensorContents {
            bytes_contents: vec![b"MThd".to_vec()],
            ..Default::default()
        });
        for request in [raw, typed] {
            let values = read_inputs(&request).unwrap();
            assert!(matches!(values["frames"], Value::Int(7)));
            assert!(matches!(values["seed"], Value::Uint(9)));
            assert!(matches!(&values["primer_midi"], Value::Bytes(b) if b == b"MThd"));
        }
    }

    #[test]
    fn bad_tensors_are_named() {
        let frames = |datatype, shape, raw: Vec<u8>| {
            request(vec![input("frames", datatype, shape)], vec![raw])
        };
        let four = 7i32.to_le_bytes().to_vec();
        assert!(error(&frames("FP32", vec![1], four.clone())).contains("frames: datatype"));
        assert!(error(&frames("INT32", vec![2], four.clone())).contains("frames: shape [2]"));
        assert!(error(&frames("INT32", vec![1], vec![1, 2])).contains("2 raw bytes"));
        let bad_bytes = request(
            vec![input("primer_midi", "BYTES", vec![1])],
            vec![vec![9, 0, 0, 0, 1]],
        );
        assert!(error(&bad_bytes).contains("primer_midi: raw BYTES"));
        let unknown = request(vec![input("tempo", "FP64", vec![1])], Vec::new());
        assert!(error(&unknown).contains("\"tempo\": not an input"));
        let typed_empty = request(vec![input("frames", "INT32", vec![1])], Vec::new());
        assert!(error(&typed_empty).contains("int_contents has 0 elements"));
        let twice = request(
            vec![
                input("frames", "INT32", vec![1]),
                input("frames", "INT32", vec![1]),
            ],
            vec![four.clone(), four.clone()],
        );
        assert!(error(&twice).contains("given twice"));
        let uneven = request(
            vec![input("frames", "INT32", vec![1])],
            vec![four.clone(), four],
        );
        assert!(error(&uneven).contains("2 entries for 1 inputs"));
    }
}
