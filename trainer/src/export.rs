//! `trainer export`: a run's weights as a model folder for the server — `model.onnx` (one
//! recurrent step that also samples the next frame, eval mode, BatchNorm folded) and
//! `model.json` (see [`proto::card`]).
//!
//! The folder is assembled in a hidden staging folder beside the destination and renamed into
//! place when complete, so a failed export leaves nothing behind and never a half-written model.

use std::path::Path;

use anyhow::{Context, Result};
use pipeline::atomic::{self, Refusal};
use prost::Message;
use proto::card::{
    CARD_FILE, FORMAT_VERSION, FRAME_INPUT, GRAPH_FILE, LOGITS_OUTPUT, Metrics, ModelCard,
    OnnxVersions, SamplingTensors, Source,
};
use proto::onnx::ModelProto;
use sha2::{Digest, Sha256};
use tch::Device;

use crate::model::{Body, parameter_count};
use crate::nade::HeadConfig;
use crate::onnx::{IR_VERSION, OPSET, StepGraph};
use crate::run::{BEST_WEIGHTS_FILE, LAST_WEIGHTS_FILE, Loaded, RunFolder, load};

/// A model's recurrent step with its head's sampling as an ONNX model, and the card that
/// describes its tensors.
pub fn step_model(loaded: &Loaded) -> (ModelProto, ModelCard) {
    let keys = pipeline::KEY_COUNT as i64;
    let mut graph = StepGraph::new(keys);
    let kind = loaded.config.model.kind();
    let rows = match &loaded.model.body {
        Body::Lstm(m) => m.onnx_step(&mut graph, &loaded.vs.variables()),
        Body::Rwkv(m) => m.onnx_step(&mut graph),
    };
    let sampled = loaded.model.head.onnx_sample(&mut graph, &rows);
    let head = match loaded.config.model.head() {
        HeadConfig::Bernoulli => "bernoulli",
        HeadConfig::Nade { .. } => "nade",
    };
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
        head: head.to_owned(),
        roll_settings: loaded.config.roll_settings,
        lowest_pitch: pipeline::LOWEST_PITCH,
        pitch_count: pipeline::KEY_COUNT,
        frame_input: FRAME_INPUT.to_owned(),
        logits_output: LOGITS_OUTPUT.to_owned(),
        sampling: Some(SamplingTensors::default()),
        states,
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

/// Export `checkpoint` (a run folder, meaning its best weights, or a `.safetensors` file in
/// one) into the model folder `output`. An existing `output` is replaced only with `force`, and
/// only if it is a model folder.
pub fn export(checkpoint: &Path, output: &Path, force: bool) -> Result<ModelCard> {
    atomic::check_replaceable(output, force, CARD_FILE).map_err(|refusal| match refusal {
        Refusal::Exists => anyhow::anyhow!(
            "{} already exists (use --force to replace a model folder)",
            output.display()
        ),
        Refusal::NotOurs => anyhow::anyhow!(
            "{} exists and is not a model folder (no {CARD_FILE}); not replacing it",
            output.display()
        ),
    })?;
    let loaded = load(checkpoint, Device::Cpu)?;
    let bytes = std::fs::read(&loaded.weights)
        .with_context(|| format!("reading checkpoint {}", loaded.weights.display()))?;
    let (model, mut card) = tch::no_grad(|| step_model(&loaded));
    card.source = Source {
        checkpoint: loaded.weights.display().to_string(),
        sha256: pipeline::dataset::hex(&Sha256::digest(&bytes)),
    };
    metrics_of(&loaded.weights, &mut card.metrics)?;

    let staging = atomic::staging_beside(output)
        .with_context(|| format!("creating a staging folder beside {}", output.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = staging.path().join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write(GRAPH_FILE, &model.encode_to_vec())?;
    write(CARD_FILE, &card.to_json())?;
    atomic::publish_folder(staging, output)
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(card)
}
