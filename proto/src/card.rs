//! `model.json`: the card beside every exported `model.onnx`.
//!
//! The ONNX graph is one recurrent step that also samples the next frame. The card says how to
//! drive it without knowing the model's family or output head:
//!
//! - feed `frame` [batch, 88] (0/1 per key, lowest key first), every state input, `uniform`
//!   [batch, 88] (one uniform number in [0, 1) per key, from [`crate::sampling::Uniforms`]) and
//!   `temperature` [batch, 1];
//! - read `next_frame` [batch, 88] (key k is on when `uniform[k]` is below the probability the
//!   model gives it, which for a NADE head depends on the keys already decided below k; the
//!   graph compares in logit space, `logit > temperature · ln(u / (1 − u))`),
//!   `probabilities` [batch, 88] (those probabilities, logits divided by the temperature),
//!   `logits` [batch, 88] (the logits before that division) and every state output;
//! - feed the state outputs back as the next step's state inputs, and `next_frame` as the next
//!   `frame` once the primer is used up.
//!
//! Every state tensor is [batch, width] and starts filled with its `initial` value, so a server
//! can batch requests by concatenating rows. Format 1 (written before sampling moved into the
//! graph) had `logits` only; it still reads, with `sampling` absent.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// File names inside a model folder.
pub const GRAPH_FILE: &str = "model.onnx";
pub const CARD_FILE: &str = "model.json";

/// Version of the card format this build writes; it reads this one and format 1.
pub const FORMAT_VERSION: u32 = 2;
/// The first format, whose graphs output logits only (no sampling in the graph).
pub const FORMAT_VERSION_LOGITS_ONLY: u32 = 1;

/// Names of the graph's inputs and outputs other than the state.
pub const FRAME_INPUT: &str = "frame";
pub const LOGITS_OUTPUT: &str = "logits";
pub const UNIFORM_INPUT: &str = "uniform";
pub const TEMPERATURE_INPUT: &str = "temperature";
pub const NEXT_FRAME_OUTPUT: &str = "next_frame";
pub const PROBABILITIES_OUTPUT: &str = "probabilities";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format_version: u32,
    /// Model family: "lstm" or "rwkv".
    pub kind: String,
    /// Output head: "bernoulli" (absent in older cards) or "nade". Informative: the graph
    /// samples, so a driver needs no head-specific code.
    #[serde(default)]
    pub head: HeadKind,
    /// The grid and transposition the model was trained on; generated frames are on this grid.
    pub roll_settings: pianoroll::RollSettings,
    /// MIDI pitch of the first of the `pitch_count` columns of `frame` and `logits`.
    pub lowest_pitch: u8,
    pub pitch_count: usize,
    pub frame_input: String,
    pub logits_output: String,
    /// The sampling tensors (format 2 on; `None` in a format 1 card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingTensors>,
    /// The recurrent state, in graph input order.
    pub states: Vec<StateTensor>,
    /// The model was trained with one silent frame before every piece, so a driver feeds one
    /// before the primer too ([`crate::sampling::start_frames`]); absent in older cards:
    /// false, the primer's first frame first.
    #[serde(default)]
    pub silent_start: bool,
    /// The trainer's model configuration (sizes), as the trainer wrote it.
    pub model_config: serde_json::Value,
    pub metrics: Metrics,
    pub source: Source,
    /// The recipe the run was trained from, when it had one (`trainer train --recipe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<Recipe>,
    pub onnx: OnnxVersions,
    /// Tool and version that wrote the folder.
    pub producer: String,
}

/// The title the MIDI file of a generated piece carries: the model's name (its folder, or for
/// `trainer sample` its run folder) and family. One rule, so the server and `trainer sample`
/// write the same file for the same piece.
pub fn piece_title(model_name: &str, kind: &str) -> String {
    format!("pianoroll {model_name} ({kind})")
}

/// A model's output head: the distribution it puts over the keys of the next frame. One type
/// for the card, the trainer's recipes and flags (`head = "nade"`, `--head nade`) and its model
/// configurations, written as the names below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// "bernoulli": 88 independent keys.
    #[default]
    Bernoulli,
    /// "nade": keys decided lowest first, each given those below it in the frame.
    Nade,
}

impl HeadKind {
    pub const ALL: [HeadKind; 2] = [HeadKind::Bernoulli, HeadKind::Nade];

    /// The name cards, recipes and flags give the head.
    pub fn as_str(self) -> &'static str {
        match self {
            HeadKind::Bernoulli => "bernoulli",
            HeadKind::Nade => "nade",
        }
    }
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown output head {0:?} (expected bernoulli or nade)")]
pub struct UnknownHead(pub String);

impl std::str::FromStr for HeadKind {
    type Err = UnknownHead;

    fn from_str(name: &str) -> Result<HeadKind, UnknownHead> {
        HeadKind::ALL
            .into_iter()
            .find(|head| head.as_str() == name)
            .ok_or_else(|| UnknownHead(name.to_owned()))
    }
}

/// The graph's sampling inputs and outputs (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingTensors {
    pub uniform_input: String,
    pub temperature_input: String,
    pub next_frame_output: String,
    pub probabilities_output: String,
}

impl Default for SamplingTensors {
    fn default() -> SamplingTensors {
        SamplingTensors {
            uniform_input: UNIFORM_INPUT.to_owned(),
            temperature_input: TEMPERATURE_INPUT.to_owned(),
            next_frame_output: NEXT_FRAME_OUTPUT.to_owned(),
            probabilities_output: PROBABILITIES_OUTPUT.to_owned(),
        }
    }
}

/// A recipe file as the run recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The file's name without `.toml`.
    pub name: String,
    /// The file's text.
    pub toml: String,
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

    /// The sampling tensors, or why this card has none (a format 1 card: its graph outputs
    /// logits only, and the run must be exported again to sample in the graph).
    pub fn sampling(&self) -> Result<&SamplingTensors, String> {
        self.sampling.as_ref().ok_or_else(|| {
            format!(
                "format_version {} cards describe a graph without sampling (written by an older \
                 trainer); export the run again with `trainer export`",
                self.format_version
            )
        })
    }

    /// The graph inputs the card names: frame, states, and the sampling inputs.
    pub fn input_names(&self) -> Vec<&str> {
        let mut names = vec![self.frame_input.as_str()];
        names.extend(self.states.iter().map(|s| s.input.as_str()));
        if let Some(sampling) = &self.sampling {
            names.extend([
                sampling.uniform_input.as_str(),
                sampling.temperature_input.as_str(),
            ]);
        }
        names
    }

    /// The graph outputs the card names: logits, states, and the sampling outputs.
    pub fn output_names(&self) -> Vec<&str> {
        let mut names = vec![self.logits_output.as_str()];
        names.extend(self.states.iter().map(|s| s.output.as_str()));
        if let Some(sampling) = &self.sampling {
            names.extend([
                sampling.next_frame_output.as_str(),
                sampling.probabilities_output.as_str(),
            ]);
        }
        names
    }

    /// The card as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a card serialises");
        bytes.push(b'\n');
        bytes
    }

    /// What a reader relies on: the format version, the keyboard, distinct non-empty names.
    pub fn check(&self) -> Result<(), String> {
        if ![FORMAT_VERSION_LOGITS_ONLY, FORMAT_VERSION].contains(&self.format_version) {
            return Err(format!(
                "format_version {} is not supported (this build reads \
                 {FORMAT_VERSION_LOGITS_ONLY} and {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.format_version == FORMAT_VERSION && self.sampling.is_none() {
            return Err(format!(
                "format_version {FORMAT_VERSION} needs \"sampling\" (its tensor names)"
            ));
        }
        if self.lowest_pitch != pianoroll::LOWEST_PITCH || self.pitch_count != pianoroll::KEY_COUNT
        {
            return Err(format!(
                "lowest_pitch {} and pitch_count {}: this build plays {} keys from MIDI {}",
                self.lowest_pitch,
                self.pitch_count,
                pianoroll::KEY_COUNT,
                pianoroll::LOWEST_PITCH
            ));
        }
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
        }
        let mut names = self.input_names();
        names.extend(self.output_names());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The head's names are the strings model.json files already hold, both ways, and
    /// `as_str`, `Display` and `FromStr` agree with serde.
    #[test]
    fn head_kinds_are_written_as_their_names() {
        for (head, name) in [(HeadKind::Bernoulli, "bernoulli"), (HeadKind::Nade, "nade")] {
            assert_eq!(serde_json::to_value(head).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<HeadKind>(name.into()).unwrap(),
                head
            );
            assert_eq!((head.as_str(), head.to_string()), (name, name.to_owned()));
            assert_eq!(name.parse::<HeadKind>().unwrap(), head);
        }
        let error = "Nade".parse::<HeadKind>().unwrap_err();
        assert!(error.to_string().contains("\"Nade\""), "{error}");
        assert!(serde_json::from_value::<HeadKind>("lstm".into()).is_err());
    }

    /// Every card in the repository still reads: the shipped NADE models, and a format 1 card
    /// written before cards named their head (so Bernoulli) or a silent start (so none).
    #[test]
    fn existing_cards_read_with_their_heads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (folder, head) in [
            ("models/lstm-nade", HeadKind::Nade),
            ("models/rwkv-nade", HeadKind::Nade),
            ("trainer/tests/fixtures/old-rwkv-model", HeadKind::Bernoulli),
        ] {
            let card = ModelCard::read(&root.join(folder)).unwrap();
            assert_eq!(card.head, head, "{folder}");
        }
        let json = serde_json::to_value(ModelCard::read(&root.join("models/lstm-nade")).unwrap());
        assert_eq!(json.unwrap()["head"], "nade");
        // Cards from before the silent start read as without it.
        let old = ModelCard::read(&root.join("trainer/tests/fixtures/old-rwkv-model")).unwrap();
        assert!(!old.silent_start);
    }
}
