//! Generation with the recurrent form: feed a primer through the model to build its state, then
//! repeatedly sample every key from Bernoulli(sigmoid(logit / T)) and feed the frame back.

use std::path::Path;

use anyhow::{Context, Result, bail};
use pipeline::{Frame, KEY_COUNT, PianoRoll};
use tch::{Device, Kind, Tensor};

use crate::model::Model;

/// The frames of the MIDI file `path` on the grid of `settings`, to start a generation with.
pub fn primer_frames(path: &Path, settings: &pipeline::RollSettings) -> Result<Vec<Frame>> {
    let bytes = std::fs::read(path).with_context(|| format!("--primer {}", path.display()))?;
    let piece = pipeline::read_midi(&bytes, settings)
        .with_context(|| format!("--primer {}", path.display()))?;
    Ok(piece.roll.frames().to_vec())
}

fn frames_to_tensor(frames: &[Frame], device: Device) -> Tensor {
    let mut values = vec![0f32; frames.len() * KEY_COUNT];
    for (i, frame) in frames.iter().enumerate() {
        frame.keys().for_each(|k| values[i * KEY_COUNT + k] = 1.0);
    }
    Tensor::from_slice(&values)
        .reshape([frames.len() as i64, KEY_COUNT as i64])
        .to_device(device)
}

/// `primer` frames followed by `steps` sampled ones.
pub fn generate(
    model: &Model,
    primer: &[Frame],
    steps: usize,
    temperature: f64,
    seed: u64,
    device: Device,
) -> Result<PianoRoll> {
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!("--temperature must be a positive number, got {temperature}");
    }
    tch::manual_seed(seed as i64);
    let mut frames: Vec<Frame> = primer.to_vec();
    tch::no_grad(|| {
        let mut state = model.zero_state(1, device);
        // Without a primer, the model starts from a silent frame.
        let start = if primer.is_empty() {
            vec![Frame::SILENT]
        } else {
            primer.to_vec()
        };
        let mut logits = Tensor::zeros([1, KEY_COUNT as i64], (Kind::Float, device));
        for row in frames_to_tensor(&start, device).split(1, 0) {
            let (next_logits, next_state) = model.step(&row, &state);
            logits = next_logits;
            state = next_state;
        }
        for _ in 0..steps {
            let frame_tensor = (&logits / temperature).sigmoid().bernoulli();
            let on: Vec<f32> =
                Vec::try_from(frame_tensor.reshape([-1]).to_kind(Kind::Float)).expect("88 floats");
            let frame = Frame::from_pitches(
                on.iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0.5)
                    .map(|(k, _)| pipeline::LOWEST_PITCH + k as u8),
            )
            .expect("keys in range");
            frames.push(frame);
            let (next_logits, next_state) = model.step(&frame_tensor, &state);
            logits = next_logits;
            state = next_state;
        }
    });
    Ok(PianoRoll::from_frames(frames))
}
