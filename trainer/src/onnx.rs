//! Writing ONNX graphs by hand: tch has no exporter, so each body describes its recurrent step
//! with this small builder (`Lstm::onnx_step`, `Rwkv::onnx_step`), each head its sampling
//! (`Head::onnx_sample` in `head/`), and [`StepGraph::finish`] wraps it into a model file. Values are named after what they are (`block0.att.wkv`), so the
//! graph reads well in a viewer such as Netron.

use proto::card::{
    FRAME_INPUT, LOGITS_OUTPUT, NEXT_FRAME_OUTPUT, PROBABILITIES_OUTPUT, StateTensor,
    TEMPERATURE_INPUT, UNIFORM_INPUT,
};
use proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto,
    tensor_shape_proto, type_proto,
};
use tch::{Kind, Tensor};

/// Opset 17: the first with LayerNormalization.
pub const OPSET: i64 = 17;
/// IR version 8 is what opset 17 came with; ONNX Runtime 1.31 reads up to 10.
pub const IR_VERSION: i64 = 8;
/// The symbolic batch dimension of every input and output.
pub const BATCH: &str = "batch";

/// Epsilon of tch's BatchNorm and LayerNorm defaults, which the models use.
pub const NORM_EPS: f64 = 1e-5;

/// A graph under construction: one recurrent step over `frame` [batch, 88].
#[derive(Default)]
pub struct StepGraph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    states: Vec<StateTensor>,
}

fn float_tensor_type(width: i64) -> TypeProto {
    let dim = |value| tensor_shape_proto::Dimension {
        value: Some(value),
        denotation: String::new(),
    };
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: tensor_proto::DataType::Float as i32,
            shape: Some(TensorShapeProto {
                dim: vec![
                    dim(tensor_shape_proto::dimension::Value::DimParam(
                        BATCH.to_owned(),
                    )),
                    dim(tensor_shape_proto::dimension::Value::DimValue(width)),
                ],
            }),
        })),
        denotation: String::new(),
    }
}

fn value_info(name: &str, width: i64, doc: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(float_tensor_type(width)),
        doc_string: doc.to_owned(),
    }
}

/// An attribute for [`StepGraph::node`].
pub enum Attr {
    Int(&'static str, i64),
    Float(&'static str, f32),
}

/// ONNX's code for f32 (`Cast`'s `to`).
pub const FLOAT: i64 = tensor_proto::DataType::Float as i64;

/// The values a step's head produces: the graph's `logits`, `probabilities` and `next_frame`.
pub struct HeadOutputs {
    pub logits: String,
    pub probabilities: String,
    pub next_frame: String,
}

impl StepGraph {
    /// A graph whose inputs are `frame` [batch, `keys`], `uniform` [batch, `keys`] and
    /// `temperature` [batch, 1] (names in [`proto::card`]).
    pub fn new(keys: i64) -> StepGraph {
        let mut graph = StepGraph::default();
        graph.inputs.push(value_info(
            FRAME_INPUT,
            keys,
            "the current frame: 1.0 where a key sounds, else 0.0; lowest key first",
        ));
        graph.inputs.push(value_info(
            UNIFORM_INPUT,
            keys,
            "one uniform number in [0, 1) per key: key k of next_frame is on when uniform[k] \
             is below its probability",
        ));
        graph.inputs.push(value_info(
            TEMPERATURE_INPUT,
            1,
            "sampling temperature: probabilities are sigmoid(logit / temperature)",
        ));
        graph
    }

    /// A constant vector of i64 (shapes, split sizes); returns its name.
    pub fn constant_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: tensor_proto::DataType::Int64 as i32,
            name: name.to_owned(),
            raw_data: values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.to_owned()
    }

    /// A constant (weights), stored as f32; returns its name.
    pub fn constant(&mut self, name: &str, value: &Tensor) -> String {
        let value = value
            .detach()
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous();
        let floats: Vec<f32> = Vec::try_from(value.reshape([-1])).expect("a float tensor");
        let raw_data = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: value.size(),
            data_type: tensor_proto::DataType::Float as i32,
            name: name.to_owned(),
            raw_data,
            ..Default::default()
        });
        name.to_owned()
    }

    /// A node `op` from `inputs` to the single value `output`; returns `output`.
    pub fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: &[Attr]) -> String {
        self.node_n(op, inputs, &[output], attrs);
        output.to_owned()
    }

    /// A node with several outputs.
    pub fn node_n(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: &[Attr]) {
        let attribute = attrs
            .iter()
            .map(|attr| match *attr {
                Attr::Int(name, i) => AttributeProto {
                    name: name.to_owned(),
                    i,
                    r#type: attribute_proto::AttributeType::Int as i32,
                    ..Default::default()
                },
                Attr::Float(name, f) => AttributeProto {
                    name: name.to_owned(),
                    f,
                    r#type: attribute_proto::AttributeType::Float as i32,
                    ..Default::default()
                },
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: outputs[0].to_owned(),
            op_type: op.to_owned(),
            attribute,
            ..Default::default()
        });
    }

    /// `x · weightᵀ + bias` for a tch Linear weight [out, in] (one Gemm node).
    pub fn linear(
        &mut self,
        x: &str,
        weight: &Tensor,
        bias: Option<&Tensor>,
        name: &str,
    ) -> String {
        let w = self.constant(&format!("{name}.weight"), weight);
        let mut inputs = vec![x.to_owned(), w];
        if let Some(bias) = bias {
            inputs.push(self.constant(&format!("{name}.bias"), bias));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Gemm", &inputs, name, &[Attr::Int("transB", 1)])
    }

    /// LayerNormalization over the last axis with tch's epsilon.
    pub fn layer_norm(&mut self, x: &str, norm: &tch::nn::LayerNorm, name: &str) -> String {
        let scale = self.constant(
            &format!("{name}.weight"),
            norm.ws.as_ref().expect("elementwise affine"),
        );
        let bias = self.constant(
            &format!("{name}.bias"),
            norm.bs.as_ref().expect("elementwise affine"),
        );
        self.node(
            "LayerNormalization",
            &[x, &scale, &bias],
            name,
            &[
                Attr::Int("axis", -1),
                Attr::Float("epsilon", NORM_EPS as f32),
            ],
        )
    }

    /// The sampling rule both heads share, in two parts. Key k is on when `uniform[k]` is below
    /// `sigmoid(logit / temperature)`, which is compared in logit space: on when `logit >
    /// temperature · ln(u / (1 − u))`. This returns those thresholds for all keys at once,
    /// [batch, 88], `temperature · (ln u − ln(1 − u))`, so each key's decision is then a single
    /// comparison ([`StepGraph::decide_keys`]). `Head::sample` is the same arithmetic in tch.
    pub fn sampling_thresholds(&mut self) -> String {
        let one = self.constant("sampling.one", &Tensor::from_slice(&[1f32]));
        let complement = self.node("Sub", &[&one, UNIFORM_INPUT], "sampling.complement", &[]);
        let log_u = self.node("Log", &[UNIFORM_INPUT], "sampling.log_uniform", &[]);
        let log_complement = self.node("Log", &[&complement], "sampling.log_complement", &[]);
        let log_odds = self.node("Sub", &[&log_u, &log_complement], "sampling.log_odds", &[]);
        self.node(
            "Mul",
            &[&log_odds, TEMPERATURE_INPUT],
            "sampling.thresholds",
            &[],
        )
    }

    /// Keys on (1.0) where `logits` exceed `thresholds` (same shape), else 0.0.
    pub fn decide_keys(&mut self, logits: &str, thresholds: &str, name: &str) -> String {
        let on = self.node("Less", &[thresholds, logits], &format!("{name}.on"), &[]);
        self.node(
            "Cast",
            &[&on],
            &format!("{name}.key"),
            &[Attr::Int("to", FLOAT)],
        )
    }

    /// Each key's probability of sounding, `sigmoid(logits / temperature)`.
    pub fn probabilities(&mut self, logits: &str, name: &str) -> String {
        let scaled = self.node(
            "Div",
            &[logits, TEMPERATURE_INPUT],
            &format!("{name}.scaled"),
            &[],
        );
        self.node("Sigmoid", &[&scaled], &format!("{name}.probability"), &[])
    }

    /// Declare a state tensor: graph input `name` [batch, width] starting at `initial`; its next
    /// value is set later with [`StepGraph::state_output`]. Returns the input's name.
    pub fn state_input(&mut self, name: &str, width: i64, initial: f32, doc: &str) -> String {
        self.inputs.push(value_info(name, width, doc));
        self.states.push(StateTensor {
            input: name.to_owned(),
            output: format!("{name}_next"),
            width: width as usize,
            initial,
        });
        name.to_owned()
    }

    /// The next value of state `name` is `value`.
    pub fn state_output(&mut self, name: &str, value: &str) {
        let state = self
            .states
            .iter()
            .find(|s| s.input == name)
            .expect("state declared with state_input");
        let (output, width) = (state.output.clone(), state.width as i64);
        self.node("Identity", &[value], &output, &[]);
        self.outputs
            .push(value_info(&output, width, &format!("next value of {name}")));
    }

    /// Finish with the head's values as the outputs: the model file and the state description.
    pub fn finish(
        mut self,
        sampled: &HeadOutputs,
        keys: i64,
        name: &str,
        doc: &str,
        metadata: &[(&str, String)],
    ) -> (ModelProto, Vec<StateTensor>) {
        let outputs = [
            (
                &sampled.next_frame,
                NEXT_FRAME_OUTPUT,
                "the sampled next frame: 1.0 where a key sounds, else 0.0",
            ),
            (
                &sampled.probabilities,
                PROBABILITIES_OUTPUT,
                "each key's probability of sounding, as it was drawn with (for a NADE head, \
                 given the keys decided below it)",
            ),
            (
                &sampled.logits,
                LOGITS_OUTPUT,
                "each key's logit: probability = sigmoid(logit / temperature)",
            ),
        ];
        for (position, (value, output, doc)) in outputs.into_iter().enumerate() {
            self.node("Identity", &[value], output, &[]);
            self.outputs.insert(position, value_info(output, keys, doc));
        }
        assert_eq!(
            self.states.len() + 3,
            self.outputs.len(),
            "every state has an output"
        );
        let graph = GraphProto {
            node: self.nodes,
            name: name.to_owned(),
            initializer: self.initializers,
            doc_string: doc.to_owned(),
            input: self.inputs,
            output: self.outputs,
            value_info: Vec::new(),
        };
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "pianoroll-trainer".to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            domain: String::new(),
            model_version: 1,
            doc_string: doc.to_owned(),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            metadata_props: metadata
                .iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: key.to_string(),
                    value: value.clone(),
                })
                .collect(),
        };
        (model, self.states)
    }
}
