//! `model.json`: the card beside every exported `model.onnx`.
//!
//! The ONNX graph is one recurrent step. The card says how to drive it without knowing which
//! model family it is: feed `frame` [batch, 88] (0/1 per key, lowest key first) and every state
//! input, read `logits` [batch, 88] and every state output, and feed the state outputs back as
//! the next step's state inputs. Every state tensor is [batch, width] and starts filled with its
//! `initial` value, so a server can batch requests by concatenating rows.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// File names inside a model folder.
pub const GRAPH_FILE: &str = "model.onnx";
pub const CARD_FILE: &str = "model.json";

/// Version of the card format; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;

/// Names of the graph's frame input and logits output.
pub const FRAME_INPUT: &str = "frame";
pub const LOGITS_OUTPUT: &str = "logits";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format_version: u32,
    /// Model family: "lstm" or "rwkv".
    pub kind: String,
    /// The grid and transposition the model was trained on; generated frames are on this grid.
    pub roll_settings: pipeline::RollSettings,
    /// MIDI pitch of the first of the `pitch_count` columns of `frame` and `logits`.
    pub lowest_pitch: u8,
    pub pitch_count: usize,
    pub frame_input: String,
    pub logits_output: String,
    /// The recurrent state, in graph input order.
    pub states: Vec<StateTensor>,
    /// The trainer's model configuration (sizes), as the trainer wrote it.
    pub model_config: serde_json::Value,
    pub metrics: Metrics,
    pub source: Source,
    pub onnx: OnnxVersions,
    /// Tool and version that wrote the folder.
    pub producer: String,
}

/// One state tensor: graph input `input` [batch, width], its next value in graph output `output`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateTensor {
    pub input: String,
    pub output: String,
    pub width: usize,
    /// Value of every element before the first step.
    pub initial: f32,
}

/// What the exported weights scored (nats per frame; accuracy as TP/(TP+FP+FN)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub parameters: i64,
    /// Training epoch the weights come from, when known.
    pub epoch: Option<usize>,
    pub valid_nll_per_frame: Option<f64>,
    pub test_nll_per_frame: Option<f64>,
    pub test_frame_accuracy: Option<f64>,
}

/// The checkpoint the graph was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub checkpoint: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnnxVersions {
    pub opset: i64,
    pub ir_version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("{path}: cannot read: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: not a model card: {error}")]
    Parse {
        path: String,
        error: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

impl ModelCard {
    /// Read and check the card of the model folder `dir`.
    pub fn read(dir: &Path) -> Result<ModelCard, CardError> {
        let path = dir.join(CARD_FILE);
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|error| CardError::Read {
            path: shown.clone(),
            error,
        })?;
        let card: ModelCard = serde_json::from_slice(&bytes).map_err(|error| CardError::Parse {
            path: shown.clone(),
            error,
        })?;
        card.check().map_err(|problem| CardError::Invalid {
            path: shown,
            problem,
        })?;
        Ok(card)
    }

    /// The card as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a card serialises");
        bytes.push(b'\n');
        bytes
    }

    /// What a reader relies on: the format version, the keyboard, distinct non-empty names.
    pub fn check(&self) -> Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.lowest_pitch != pipeline::LOWEST_PITCH || self.pitch_count != pipeline::KEY_COUNT {
            return Err(format!(
                "lowest_pitch {} and pitch_count {}: this build plays {} keys from MIDI {}",
                self.lowest_pitch,
                self.pitch_count,
                pipeline::KEY_COUNT,
                pipeline::LOWEST_PITCH
            ));
        }
        let mut names = vec![self.frame_input.as_str(), self.logits_output.as_str()];
        for state in &self.states {
            if state.width == 0 {
                return Err(format!("state {:?} has width 0", state.input));
            }
            if !state.initial.is_finite() {
                return Err(format!(
                    "state {:?} has a non-finite initial value",
                    state.input
                ));
            }
            names.push(&state.input);
            names.push(&state.output);
        }
        if let Some(empty) = names.iter().position(|n| n.is_empty()) {
            return Err(format!("tensor name {empty} is empty"));
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|p| p[0] == p[1]) {
            return Err(format!("tensor name {:?} is used twice", pair[0]));
        }
        Ok(())
    }
}
