//! `trainer export`: a run's weights as a model folder for the server — `model.onnx` (one
//! recurrent step that also samples the next frame, eval mode, BatchNorm folded) and
//! `model.json` (see [`proto::card`]).
//!
//! The folder is assembled in a hidden staging folder beside the destination and renamed into
//! place when complete, so a failed export leaves nothing behind and never a half-written model.

use std::path::Path;

use anyhow::{Context, Result, bail};
use pianoroll::atomic::{self, Refusal};
use prost::Message;
use proto::card::{
    CARD_FILE, FORMAT_VERSION, FRAME_INPUT, GRAPH_FILE, LOGITS_OUTPUT, Metrics, ModelCard,
    OnnxVersions, SamplingTensors, Source,
};
use proto::onnx::ModelProto;
use sha2::{Digest, Sha256};
use tch::Device;

use crate::model::{Body, parameter_count};
use crate::onnx::{IR_VERSION, OPSET, StepGraph};
use crate::run::{BEST_WEIGHTS_FILE, LAST_WEIGHTS_FILE, Loaded, RunFolder, load};

/// A model's recurrent step with its head's sampling as an ONNX model, and the card that
/// describes its tensors.
pub fn step_model(loaded: &Loaded) -> (ModelProto, ModelCard) {
    let keys = pianoroll::KEY_COUNT as i64;
    let mut graph = StepGraph::new(keys);
    let kind = loaded.config.model.kind();
    let rows = match &loaded.model.body {
        Body::Lstm(m) => m.onnx_step(&mut graph, &loaded.vs.variables()),
        Body::Rwkv(m) => m.onnx_step(&mut graph),
    };
    let sampled = loaded.model.head.onnx_sample(&mut graph, &rows);
    let head = loaded.config.model.head().kind();
    let model_config = serde_json::to_value(loaded.config.model).expect("config serialises");
    let doc = format!(
        "pianoroll {kind} next-frame model ({head} head), one recurrent step: feed `frame`, the \
         state, `uniform` and `temperature`; read `next_frame`, `probabilities`, `logits` and \
         the next state (model.json lists the state tensors)"
    );
    let (model, states) = graph.finish(
        &sampled,
        keys,
        &format!("pianoroll_{kind}_step"),
        &doc,
        &[("pianoroll.model_config", model_config.to_string())],
    );
    let card = ModelCard {
        format_version: FORMAT_VERSION,
        kind: kind.to_owned(),
        head,
        roll_settings: loaded.config.roll_settings,
        lowest_pitch: pianoroll::LOWEST_PITCH,
        pitch_count: pianoroll::KEY_COUNT,
        frame_input: FRAME_INPUT.to_owned(),
        logits_output: LOGITS_OUTPUT.to_owned(),
        sampling: Some(SamplingTensors::default()),
        states,
        silent_start: loaded.config.silent_start,
        model_config,
        metrics: Metrics {
            parameters: parameter_count(&loaded.vs),
            ..Metrics::default()
        },
        source: Source {
            checkpoint: String::new(),
            sha256: String::new(),
        },
        recipe: loaded.config.recipe.clone(),
        onnx: OnnxVersions {
            opset: OPSET,
            ir_version: IR_VERSION,
        },
        producer: format!("trainer {}", env!("CARGO_PKG_VERSION")),
    };
    (model, card)
}

/// What the run folder says about these weights: only the best checkpoint has scores (the
/// test scores in results.json are those of the best epoch).
fn metrics_of(weights: &Path, metrics: &mut Metrics) -> Result<()> {
    let run = RunFolder::new(weights.parent().unwrap_or(Path::new(".")));
    match weights.file_name().and_then(|n| n.to_str()) {
        Some(BEST_WEIGHTS_FILE) => {
            if let Some(best) = run.best_epoch()? {
                metrics.epoch = Some(best.epoch);
                metrics.valid_nll_per_frame = Some(best.valid_nll);
            }
            if let Some(results) = run.results()? {
                metrics.test_nll_per_frame = Some(results.test.nll_per_frame);
                metrics.test_frame_accuracy = Some(results.test.frame_accuracy);
            }
        }
        Some(LAST_WEIGHTS_FILE) => {
            metrics.epoch = run.progress()?.map(|last| last.epoch);
        }
        _ => {}
    }
    Ok(())
}

/// The step model and card of `checkpoint`, with the card's source and metrics filled in.
fn exported_model(checkpoint: &Path) -> Result<(ModelProto, ModelCard)> {
    let loaded = load(checkpoint, Device::Cpu)?;
    let bytes = std::fs::read(&loaded.weights)
        .with_context(|| format!("reading checkpoint {}", loaded.weights.display()))?;
    let (model, mut card) = tch::no_grad(|| step_model(&loaded));
    card.source = Source {
        checkpoint: loaded.weights.display().to_string(),
        sha256: pipeline::dataset::hex(&Sha256::digest(&bytes)),
    };
    metrics_of(&loaded.weights, &mut card.metrics)?;
    Ok((model, card))
}

/// Refuse to replace `output` unless `force` and it holds `marker` (it is ours).
fn check_output(output: &Path, force: bool, marker: &str, what: &str) -> Result<()> {
    atomic::check_replaceable(output, force, marker).map_err(|refusal| match refusal {
        Refusal::Exists => anyhow::anyhow!(
            "{} already exists (use --force to replace a {what})",
            output.display()
        ),
        Refusal::NotOurs => anyhow::anyhow!(
            "{} exists and is not a {what} (no {marker}); not replacing it",
            output.display()
        ),
    })
}

/// Write `files` (relative path, bytes) into a staging folder and publish it as `output`.
fn publish(output: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let staging = atomic::staging_beside(output)
        .with_context(|| format!("creating a staging folder beside {}", output.display()))?;
    for (name, bytes) in files {
        let path = staging.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    atomic::publish_folder(staging, output).with_context(|| format!("writing {}", output.display()))
}

/// Export `checkpoint` (a run folder, meaning its best weights, or a `.safetensors` file in
/// one) into the model folder `output`. An existing `output` is replaced only with `force`, and
/// only if it is a model folder.
pub fn export(checkpoint: &Path, output: &Path, force: bool) -> Result<ModelCard> {
    check_output(output, force, CARD_FILE, "model folder")?;
    let (model, card) = exported_model(checkpoint)?;
    publish(
        output,
        &[
            (GRAPH_FILE.to_owned(), model.encode_to_vec()),
            (CARD_FILE.to_owned(), card.to_json()),
        ],
    )?;
    Ok(card)
}

/// Export `checkpoint` as the model `name` of the Triton model repository `repository`:
/// `NAME/config.pbtxt` ([`proto::triton`]), `NAME/1/model.onnx`, the card as
/// `NAME/model.json`, and `NAME/initial_state/*.bin` for the states that do not start at 0.
/// An existing `NAME` is replaced only with `force`, and only if it has a `config.pbtxt`.
pub fn export_triton(
    checkpoint: &Path,
    repository: &Path,
    name: &str,
    force: bool,
) -> Result<ModelCard> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("--name {name:?}: a Triton model name is one folder name");
    }
    let output = repository.join(name);
    check_output(&output, force, TRITON_CONFIG_FILE, "Triton model")?;
    let (model, card) = exported_model(checkpoint)?;
    let config = proto::triton::config_pbtxt(name, &card).map_err(anyhow::Error::msg)?;
    let mut files = vec![
        (TRITON_CONFIG_FILE.to_owned(), config.into_bytes()),
        (format!("1/{GRAPH_FILE}"), model.encode_to_vec()),
        (CARD_FILE.to_owned(), card.to_json()),
    ];
    for state in card.states.iter().filter(|s| s.initial != 0.0) {
        files.push((
            format!(
                "{}/{}",
                proto::triton::INITIAL_STATE_DIR,
                proto::triton::initial_state_file(&state.input)
            ),
            proto::triton::initial_state_bytes(state.initial, state.width),
        ));
    }
    std::fs::create_dir_all(repository)
        .with_context(|| format!("creating {}", repository.display()))?;
    publish(&output, &files)?;
    Ok(card)
}

/// The configuration file of a Triton model folder.
pub const TRITON_CONFIG_FILE: &str = "config.pbtxt";
