//! The models a server runs: every subfolder of `--models` with a `model.onnx` and a
//! `model.json`. A broken folder is reported and skipped; the others still serve.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proto::card::{CARD_FILE, GRAPH_FILE, ModelCard};

use crate::batcher::Batcher;
use crate::invariance::BatchInvariance;
use crate::runtime::{Device, Provider, RuntimeError, session};
use crate::step::{StepMode, StepOptions, Stepper};

/// A loaded model and the thread that runs it.
pub struct LoadedModel {
    pub name: String,
    pub card: ModelCard,
    pub provider: Provider,
    /// Whether the provider computes a row the same in a batch as alone, measured at load.
    pub invariance: BatchInvariance,
    /// How batches go through the model ([`Stepper::describe`]).
    pub step: String,
    pub batcher: Batcher,
}

/// Rows and steps of the load-time measurement ([`crate::invariance`]): 36 session calls at
/// start. Kernels can differ by batch size, so this says what a batch of 8 does; the serving
/// bench checks 64.
const INVARIANCE_ROWS: usize = 8;
const INVARIANCE_STEPS: usize = 4;

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

/// The folders of `dir` meant to be models (holding a graph or a card; not hidden, which
/// staging folders of an export in progress are), with their names, in name order.
pub fn model_folders(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut folders: Vec<(String, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .filter_map(|path| Some((path.file_name()?.to_str()?.to_owned(), path)))
        .filter(|(name, path)| {
            !name.starts_with('.')
                && (path.join(GRAPH_FILE).is_file() || path.join(CARD_FILE).is_file())
        })
        .collect();
    folders.sort();
    Ok(folders)
}

/// The models in `dir`, by name, and the folders that failed. `threads` is each session's
/// intra-op thread count (0: ONNX Runtime's default); `step` says how batches run.
pub fn load_models(
    environment: &ort::environment::Environment,
    dir: &Path,
    device: Device,
    threads: usize,
    step: &StepOptions,
) -> Result<(BTreeMap<String, LoadedModel>, Vec<Broken>), RegistryError> {
    let folder_error = |error| RegistryError::Folder {
        path: dir.display().to_string(),
        error,
    };
    let mut models = BTreeMap::new();
    let mut broken = Vec::new();
    for (name, folder) in model_folders(dir).map_err(folder_error)? {
        match load_one(environment, &folder, device, threads, step)? {
            Ok((card, stepper, provider, invariance)) => {
                tracing::info!(
                    "model {name}: {} with a {} head on {}, {} state tensors, {} steps",
                    card.kind,
                    card.head,
                    provider.name(),
                    card.states.len(),
                    stepper.describe()
                );
                if invariance.bit_identical() {
                    tracing::info!(
                        "model {name}: {} rows batched equal the rows alone bit for bit ({} \
                         logits): a seed gives the same music whatever else runs",
                        invariance.rows,
                        invariance.compared
                    );
                } else {
                    tracing::warn!(
                        "model {name} on {}: {} of {} logits change when the row runs in a batch \
                         of {} (by up to {:e}): a seed gives the same music only when the \
                         request runs alone",
                        provider.name(),
                        invariance.rows,
                        invariance.differing,
                        invariance.compared,
                        invariance.largest_difference
                    );
                }
                let step = stepper.describe();
                let batcher = Batcher::start(&name, stepper);
                models.insert(
                    name.clone(),
                    LoadedModel {
                        name,
                        card,
                        provider,
                        invariance,
                        step,
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
/// served at all (CUDA demanded but unusable). A graph that cannot run the batch-invariance
/// measurement's steps is broken too.
#[allow(clippy::type_complexity)]
fn load_one(
    environment: &ort::environment::Environment,
    folder: &Path,
    device: Device,
    threads: usize,
    step: &StepOptions,
) -> Result<Result<(ModelCard, Stepper, Provider, BatchInvariance), String>, RuntimeError> {
    let card = match ModelCard::read(folder) {
        Ok(card) => card,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let cuda_graphs = step.mode != StepMode::Direct && step.cuda_graphs;
    match session(
        environment,
        &folder.join(GRAPH_FILE),
        device,
        threads,
        cuda_graphs,
    ) {
        Ok((mut session, provider)) => Ok(check_names(&card, &session).and_then(|()| {
            // With one shape for every batch, a row is compared in that shape, alone and not.
            let padded_to = match step.mode_on(provider) {
                StepMode::Bucketed => step.batch_rows,
                StepMode::Direct | StepMode::Auto => None,
            };
            let invariance = crate::invariance::measure(
                &mut session,
                &card,
                INVARIANCE_ROWS,
                INVARIANCE_STEPS,
                padded_to,
            )
            .map_err(|e| format!("{GRAPH_FILE}: a test step failed: {e}"))?;
            let stepper = Stepper::new(session, card.clone(), provider, step)
                .map_err(|e| format!("{GRAPH_FILE}: {e}"))?;
            Ok((card, stepper, provider, invariance))
        })),
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
