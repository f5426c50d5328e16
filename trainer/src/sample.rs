//! Generation with the recurrent form: feed a primer through the model to build its state, then
//! repeatedly sample a frame from the head and feed it back. Each key is on when its uniform
//! number is below sigmoid(logit / T) (with a NADE head key by key, lowest first), and the
//! uniforms come from [`proto::sampling::Uniforms`] seeded with `seed`: the rule and the numbers
//! of the exported graph and the server, so a model folder served with the same primer, seed
//! and temperature plays the same piece. The piece is written as the server writes it too: in
//! the primer's key (or the one asked for), with its meter and tempo
//! ([`pianoroll::setting`]).

use std::path::Path;

use anyhow::{Context, Result, bail};
use pianoroll::setting::{Asked, RoundTrip};
use pianoroll::{Frame, KEY_COUNT, PianoRoll};
use tch::{Device, Kind, Tensor};

use proto::sampling::Uniforms;

use crate::model::Model;
use crate::run::Loaded;

/// What a generation starts from, and how its piece is written.
pub struct Primer {
    /// The primer's frames on the run's grid, as the model reads them (moved to C for a model
    /// trained in C); none without a primer.
    pub frames: Vec<Frame>,
    /// The piece's key, meter and tempo, and the move from the model's frames to its key.
    pub trip: RoundTrip,
}

impl Primer {
    /// The MIDI file `path` (if any) on the grid of `settings`, with what was `asked`.
    pub fn read(
        path: Option<&Path>,
        settings: &pianoroll::RollSettings,
        asked: &Asked,
    ) -> Result<Primer> {
        let Some(path) = path else {
            return Ok(Primer {
                frames: Vec::new(),
                trip: RoundTrip::new(None, asked).context("--key")?,
            });
        };
        let bytes = std::fs::read(path).with_context(|| format!("--primer {}", path.display()))?;
        let piece = pianoroll::read_midi(&bytes, settings)
            .with_context(|| format!("--primer {}", path.display()))?;
        Ok(Primer {
            frames: piece.roll.frames().to_vec(),
            trip: RoundTrip::new(Some(&piece), asked).context("--key")?,
        })
    }

    /// A roll the model wrote from this primer, as the piece is written: in its key.
    pub fn written(&self, roll: &PianoRoll) -> PianoRoll {
        PianoRoll::from_frames(self.trip.frames(roll.frames()))
    }
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

/// `primer` frames followed by `steps` sampled ones, from a model trained with `silent_start` or
/// without ([`proto::sampling::start_frames`]).
pub fn generate(
    model: &Model,
    silent_start: bool,
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
        let start = proto::sampling::start_frames(primer, silent_start);
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

/// A piece generated from `primer` (`roll` as the model wrote it) as a MIDI file: in the
/// piece's key with its tempo, key and time signature, titled as the server titles it (after
/// the run folder, which is the model folder's name when the export is named after the run).
pub fn sample_midi(loaded: &Loaded, primer: &Primer, roll: &PianoRoll) -> Vec<u8> {
    let run_name = crate::run::run_name(&loaded.weights).unwrap_or_default();
    let title = proto::card::piece_title(&run_name, loaded.config.model.kind());
    pianoroll::write_midi(
        &primer.written(roll),
        loaded.config.roll_settings.grid,
        &primer.trip.midi_options(Some(&title)),
    )
}
