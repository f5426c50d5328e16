//! Generation with the recurrent form: feed a primer through the model to build its state, then
//! repeatedly sample a frame from the head and feed it back. Each key is on when its uniform
//! number is below sigmoid(logit / T) (with a NADE head key by key, lowest first), and the
//! uniforms come from [`proto::sampling::Uniforms`] seeded with `seed`: the rule and the numbers
//! of the exported graph and the server, so a model folder served with the same primer, seed
//! and temperature plays the same piece.

use std::path::Path;

use anyhow::{Context, Result, bail};
use pianoroll::{Frame, KEY_COUNT, PianoRoll};
use tch::{Device, Kind, Tensor};

use proto::sampling::Uniforms;

use crate::model::Model;
use crate::run::Loaded;

/// The frames of the MIDI file `path` on the grid of `settings`, to start a generation with.
pub fn primer_frames(path: &Path, settings: &pianoroll::RollSettings) -> Result<Vec<Frame>> {
    let bytes = std::fs::read(path).with_context(|| format!("--primer {}", path.display()))?;
    let piece = pianoroll::read_midi(&bytes, settings)
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
    temperature: f32,
    seed: u64,
    device: Device,
) -> Result<PianoRoll> {
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!("--temperature must be a positive number, got {temperature}");
    }
    let mut uniforms = Uniforms::new(seed);
    let mut uniform = vec![0f32; KEY_COUNT];
    let temperature = Tensor::from_slice(&[temperature])
        .reshape([1, 1])
        .to_device(device);
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
            uniforms.fill(&mut uniform);
            let uniform = Tensor::from_slice(&uniform)
                .reshape([1, KEY_COUNT as i64])
                .to_device(device);
            let frame_tensor = model.head.sample(&rows, &temperature, &uniform).frame;
            let on: Vec<f32> =
                Vec::try_from(frame_tensor.reshape([-1]).to_kind(Kind::Float)).expect("88 floats");
            let frame = Frame::from_pitches(
                on.iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0.5)
                    .map(|(k, _)| pianoroll::LOWEST_PITCH + k as u8),
            )
            .expect("keys in range");
            frames.push(frame);
            (rows, state) = model.step(&frame_tensor, &state);
        }
    });
    Ok(PianoRoll::from_frames(frames))
}

/// A generated piece as a MIDI file, titled as the server titles it (after the run folder,
/// which is the model folder's name when the export is named after the run).
pub fn sample_midi(loaded: &Loaded, roll: &PianoRoll) -> Vec<u8> {
    let run_name = crate::run::run_name(&loaded.weights).unwrap_or_default();
    let title = proto::card::piece_title(&run_name, loaded.config.model.kind());
    pianoroll::write_midi(
        roll,
        loaded.config.roll_settings.grid,
        &pianoroll::midi::MidiWriteOptions {
            title: Some(&title),
            ..Default::default()
        },
    )
}
