//! `trainer export`: a run's weights as a model folder for the server — `model.onnx` (one
//! recurrent step, eval mode, BatchNorm folded) and `model.json` (see [`proto::card`]).
//!
//! The folder is assembled in a hidden staging folder beside the destination and renamed into
//! place when complete, so a failed export leaves nothing behind and never a half-written model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use prost::Message;
use proto::card::{
    CARD_FILE, FORMAT_VERSION, FRAME_INPUT, GRAPH_FILE, LOGITS_OUTPUT, Metrics, ModelCard,
    OnnxVersions, Source,
};
use proto::onnx::ModelProto;
use sha2::{Digest, Sha256};
use tch::Device;

use crate::model::Model;
use crate::onnx::{IR_VERSION, OPSET, StepGraph};
use crate::sample::{Loaded, load};
use crate::train::{Results, parameter_count};

/// A model's recurrent step as an ONNX model, and the card that describes its tensors.
pub fn step_model(loaded: &Loaded) -> (ModelProto, ModelCard) {
    let keys = pipeline::KEY_COUNT as i64;
    let mut graph = StepGraph::new(keys);
    let kind = loaded.config.model.kind();
    let logits = match &loaded.model {
        Model::Lstm(m) => m.onnx_step(&mut graph, &loaded.vs.variables()),
        Model::Rwkv(m) => m.onnx_step(&mut graph),
    };
    let model_config = serde_json::to_value(loaded.config.model).expect("config serialises");
    let doc = format!(
        "pianoroll {kind} next-frame model, one recurrent step: feed `frame` and the state, \
         read `logits` and the next state (model.json lists the state tensors)"
    );
    let (model, states) = graph.finish(
        &logits,
        keys,
        &format!("pianoroll_{kind}_step"),
        &doc,
        &[("pianoroll.model_config", model_config.to_string())],
    );
    let card = ModelCard {
        format_version: FORMAT_VERSION,
        kind: kind.to_owned(),
        roll_settings: loaded.config.roll_settings,
        lowest_pitch: pipeline::LOWEST_PITCH,
        pitch_count: pipeline::KEY_COUNT,
        frame_input: FRAME_INPUT.to_owned(),
        logits_output: LOGITS_OUTPUT.to_owned(),
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
        onnx: OnnxVersions {
            opset: OPSET,
            ir_version: IR_VERSION,
        },
        producer: format!("trainer {}", env!("CARGO_PKG_VERSION")),
    };
    (model, card)
}

/// The weights file a run folder or checkpoint path names.
fn weights_path(checkpoint: &Path) -> PathBuf {
    if checkpoint.is_dir() {
        checkpoint.join("best.safetensors")
    } else {
        checkpoint.to_owned()
    }
}

/// What the run folder says about these weights: only the best checkpoint has scores (the
/// test scores in results.json are those of the best epoch).
fn metrics_of(weights: &Path, metrics: &mut Metrics) {
    let run = weights.parent().unwrap_or(Path::new("."));
    let read_json = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(run.join(name)).ok()?).ok()
    };
    match weights.file_name().and_then(|n| n.to_str()) {
        Some("best.safetensors") => {
            if let Some(best) = read_json("best.json") {
                metrics.epoch = best["epoch"].as_u64().map(|e| e as usize);
                metrics.valid_nll_per_frame = best["valid_nll"].as_f64();
            }
            let results = std::fs::read(run.join("results.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Results>(&b).ok());
            if let Some(results) = results {
                metrics.test_nll_per_frame = Some(results.test.nll_per_frame);
                metrics.test_frame_accuracy = Some(results.test.frame_accuracy);
            }
        }
        Some("last.safetensors") => {
            metrics.epoch =
                read_json("last.json").and_then(|l| l["epoch"].as_u64().map(|e| e as usize));
        }
        _ => {}
    }
}

/// Export `checkpoint` (a run folder, meaning its best weights, or a `.safetensors` file in
/// one) into the model folder `output`. An existing `output` is replaced only with `force`, and
/// only if it is a model folder.
pub fn export(checkpoint: &Path, output: &Path, force: bool) -> Result<ModelCard> {
    check_replaceable(output, force)?;
    let weights = weights_path(checkpoint);
    let bytes = std::fs::read(&weights)
        .with_context(|| format!("reading checkpoint {}", weights.display()))?;
    let loaded = load(checkpoint, Device::Cpu)?;
    let (model, mut card) = tch::no_grad(|| step_model(&loaded));
    card.source = Source {
        checkpoint: weights.display().to_string(),
        sha256: pipeline::dataset::hex(&Sha256::digest(&bytes)),
    };
    metrics_of(&weights, &mut card.metrics);

    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging folder in {}", parent.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = staging.path().join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write(GRAPH_FILE, &model.encode_to_vec())?;
    write(CARD_FILE, &card.to_json())?;
    publish(staging, output)?;
    Ok(card)
}

fn check_replaceable(output: &Path, force: bool) -> Result<()> {
    if !output.exists() {
        return Ok(());
    }
    if !force {
        bail!(
            "{} already exists (use --force to replace a model folder)",
            output.display()
        );
    }
    let is_model = output.join(CARD_FILE).is_file();
    let is_empty = std::fs::read_dir(output).is_ok_and(|mut d| d.next().is_none());
    if !(is_model || is_empty) {
        bail!(
            "{} exists and is not a model folder (no {CARD_FILE}); not replacing it",
            output.display()
        );
    }
    Ok(())
}

/// Rename the staging folder to `output`; an old model folder is moved aside first and deleted
/// once the new one is in place (put back if the rename fails).
fn publish(staging: tempfile::TempDir, output: &Path) -> Result<()> {
    let staged = staging.keep();
    let aside = staged.with_extension("replaced");
    let replacing = output.exists();
    if replacing {
        std::fs::rename(output, &aside)
            .with_context(|| format!("moving the old {} aside", output.display()))?;
    }
    if let Err(error) = std::fs::rename(&staged, output) {
        if replacing {
            let _ = std::fs::rename(&aside, output);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(error).with_context(|| format!("writing {}", output.display()));
    }
    if replacing {
        std::fs::remove_dir_all(&aside)
            .with_context(|| format!("removing the old model {}", aside.display()))?;
    }
    Ok(())
}
