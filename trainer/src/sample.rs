//! Generation with the recurrent form: feed a primer through the model to build its state, then
//! repeatedly sample a frame from the head (each key from Bernoulli(sigmoid(logit / T)); with a
//! NADE head key by key, lowest first) and feed the frame back.

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
        let mut rows = Tensor::zeros([1, 1], (Kind::Float, device));
        for frame in frames_to_tensor(&start, device).split(1, 0) {
            (rows, state) = model.step(&frame, &state);
        }
        for _ in 0..steps {
            let frame_tensor = model.sample(&rows, temperature);
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
            (rows, state) = model.step(&frame_tensor, &state);
        }
    });
    Ok(PianoRoll::from_frames(frames))
}
