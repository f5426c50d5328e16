//! The models a server runs: every subfolder of `--models` with a `model.onnx` and a
//! `model.json`. A broken folder is reported and skipped; the others still serve.

use std::collections::BTreeMap;
use std::path::Path;

use proto::card::{CARD_FILE, GRAPH_FILE, ModelCard};

use crate::batcher::Batcher;
use crate::runtime::{Device, Provider, RuntimeError, session};

/// A loaded model and the thread that runs it.
pub struct LoadedModel {
    pub name: String,
    pub card: ModelCard,
    pub provider: Provider,
    pub batcher: Batcher,
}

/// A model folder that could not be loaded, and why.
#[derive(Debug)]
pub struct Broken {
    pub folder: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("--models {path}: {error}")]
    Folder { path: String, error: std::io::Error },
    /// `--device cuda` on a machine without a usable CUDA provider: nothing can serve.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// The models in `dir`, by name, and the folders that failed. `threads` is each session's
/// intra-op thread count (0: ONNX Runtime's default).
pub fn load_models(
    environment: &ort::environment::Environment,
    dir: &Path,
    device: Device,
    threads: usize,
) -> Result<(BTreeMap<String, LoadedModel>, Vec<Broken>), RegistryError> {
    let folder_error = |error| RegistryError::Folder {
        path: dir.display().to_string(),
        error,
    };
    let mut folders: Vec<_> = std::fs::read_dir(dir)
        .map_err(folder_error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    let mut models = BTreeMap::new();
    let mut broken = Vec::new();
    for folder in folders {
        let Some(name) = folder
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            continue;
        };
        if name.starts_with('.') {
            continue; // staging folders of an export in progress
        }
        if !folder.join(GRAPH_FILE).is_file() && !folder.join(CARD_FILE).is_file() {
            continue; // not meant to be a model
        }
        match load_one(environment, &folder, device, threads)? {
            Ok((card, session, provider)) => {
                tracing::info!(
                    "model {name}: {} with a {} head on {}, {} state tensors",
                    card.kind,
                    card.head,
                    provider.name(),
                    card.states.len()
                );
                let batcher = Batcher::start(&name, session, card.clone());
                models.insert(
                    name.clone(),
                    LoadedModel {
                        name,
                        card,
                        provider,
                        batcher,
                    },
                );
            }
            Err(reason) => {
                tracing::error!("skipping model folder {}: {reason}", folder.display());
                broken.push(Broken {
                    folder: folder.display().to_string(),
                    reason,
                });
            }
        }
    }
    Ok((models, broken))
}

/// One model folder: `Ok(Err(reason))` when this folder is broken, `Err` when no model can be
/// served at all (CUDA demanded but unusable).
#[allow(clippy::type_complexity)]
fn load_one(
    environment: &ort::environment::Environment,
    folder: &Path,
    device: Device,
    threads: usize,
) -> Result<Result<(ModelCard, ort::session::Session, Provider), String>, RuntimeError> {
    let card = match ModelCard::read(folder) {
        Ok(card) => card,
        Err(error) => return Ok(Err(error.to_string())),
    };
    match session(environment, &folder.join(GRAPH_FILE), device, threads) {
        Ok((session, provider)) => {
            Ok(check_names(&card, &session).map(|()| (card, session, provider)))
        }
        Err(error @ RuntimeError::NoCuda(_)) => Err(error),
        Err(error) => Ok(Err(error.to_string())),
    }
}

/// The card's tensor names are the graph's inputs and outputs, and the card describes a graph
/// that samples (format 2 on).
fn check_names(card: &ModelCard, session: &ort::session::Session) -> Result<(), String> {
    card.sampling()
        .map_err(|problem| format!("{CARD_FILE}: {problem}"))?;
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    for name in card.input_names() {
        if !inputs.contains(&name) {
            return Err(format!(
                "{CARD_FILE} names input {name:?}, which {GRAPH_FILE} lacks"
            ));
        }
    }
    for name in card.output_names() {
        if !outputs.contains(&name) {
            return Err(format!(
                "{CARD_FILE} names output {name:?}, which {GRAPH_FILE} lacks"
            ));
        }
    }
    if inputs.len() != card.input_names().len() {
        return Err(format!(
            "{GRAPH_FILE} has {} inputs, {CARD_FILE} describes {}",
            inputs.len(),
            card.input_names().len()
        ));
    }
    Ok(())
}
