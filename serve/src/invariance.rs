//! Whether a request's music depends on the other requests in its batch. The batcher runs all
//! of a model's generations as one batch, so a request's frames are reproducible from its seed
//! only if the execution provider computes each row of a batch exactly as it would compute that
//! row alone. ONNX Runtime's CPU kernels do; its CUDA kernels need not (other kernels, other
//! summation orders for other batch shapes). Rather than assume either, the server measures it
//! when it loads a model and says what it found in the log and in `ListModels`.

use ort::session::Session;
use proto::card::ModelCard;

use crate::step::{initial_state, step_inputs};

/// What one measurement found: the logits of `rows` random rows over `steps` steps, run as one
/// batch and each row alone with the same inputs and states.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchInvariance {
    pub rows: usize,
    pub steps: usize,
    /// Logits compared, and those not bit-identical.
    pub compared: usize,
    pub differing: usize,
    /// The largest absolute difference between a logit in the batch and alone.
    pub largest_difference: f32,
    /// The rows both runs were padded to (`None`: the batch against each row truly alone).
    pub padded_to: Option<usize>,
}

impl BatchInvariance {
    /// Every logit equal bit for bit: a seed gives the same music whatever else runs.
    pub fn bit_identical(&self) -> bool {
        self.differing == 0
    }
}

/// Measure `session` (a model described by `card`) on `rows` rows for `steps` steps: frames
/// of a fixed pseudo-random pattern (about 5% of keys on), fixed uniforms. `padded_to`: run
/// both the batch and each row alone padded with silent rows to this many rows, as a server
/// that pads every batch to one shape does (`serve --batch-rows`); then only the other rows'
/// contents differ between the two runs, not the shape.
pub fn measure(
    session: &mut Session,
    card: &ModelCard,
    rows: usize,
    steps: usize,
    padded_to: Option<usize>,
) -> Result<BatchInvariance, String> {
    let keys = pianoroll::KEY_COUNT;
    let mut run = |rows: usize, frames: &[f32], uniform: &[f32], state: &[Vec<f32>]| {
        let shape = padded_to.unwrap_or(rows).max(rows);
        let pad = |values: &[f32], width: usize, fill: f32| {
            let mut padded = values.to_vec();
            padded.resize(shape * width, fill);
            padded
        };
        let padded_state = card
            .states
            .iter()
            .zip(state)
            .map(|(spec, values)| pad(values, spec.width, spec.initial))
            .collect();
        let outputs = session
            .run(step_inputs(
                card,
                shape,
                pad(frames, keys, 0.0),
                pad(uniform, keys, 0.0),
                vec![1.0; shape],
                padded_state,
            )?)
            .map_err(|e| e.to_string())?;
        // Only the real rows are kept.
        let width_of = |name: &str| {
            card.states
                .iter()
                .find(|spec| spec.output == name)
                .map_or(keys, |spec| spec.width)
        };
        let read = |name: &str| -> Result<Vec<f32>, String> {
            let value = outputs
                .get(name)
                .ok_or_else(|| format!("the graph has no output {name:?}"))?;
            let (_, values) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            Ok(values[..rows * width_of(name)].to_vec())
        };
        let state = card
            .states
            .iter()
            .map(|s| read(&s.output))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, String>((read(&card.logits_output)?, state))
    };
    // xorshift: the same pattern on every machine, no dependency for it.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut bit = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if seed.is_multiple_of(20) { 1.0 } else { 0.0 }
    };
    let mut batch_state = initial_state(card, rows);
    let mut row_states: Vec<Vec<Vec<f32>>> = (0..rows).map(|_| initial_state(card, 1)).collect();
    let mut found = BatchInvariance {
        rows,
        steps,
        padded_to,
        ..BatchInvariance::default()
    };
    for _ in 0..steps {
        let frames: Vec<f32> = (0..rows * keys).map(|_| bit()).collect();
        let uniform: Vec<f32> = (0..rows * keys).map(|i| (i % 97) as f32 / 97.0).collect();
        let (logits, next) = run(rows, &frames, &uniform, &batch_state)?;
        batch_state = next;
        for (row, state) in row_states.iter_mut().enumerate() {
            let span = row * keys..(row + 1) * keys;
            let (alone, next) = run(1, &frames[span.clone()], &uniform[span.clone()], state)?;
            *state = next;
            for (a, b) in alone.iter().zip(&logits[span]) {
                found.largest_difference = found.largest_difference.max((a - b).abs());
                found.differing += usize::from(a.to_bits() != b.to_bits());
                found.compared += 1;
            }
        }
    }
    Ok(found)
}
