//! The `pianoroll.v1.Composer` service: its messages translated to and from the generation
//! core ([`crate::engine`]), batcher events streamed as gRPC messages.

use std::pin::Pin;

use pianoroll::{Frame, Grid, Transpose};
use proto::pianoroll_v1::composer_server::Composer;
use proto::pianoroll_v1::{
    ComposeRequest, ComposeResponse, ComposedPiece, Frame as WireFrame, FrameChunk, Frames,
    GenerateRequest, GenerateResponse, GenerateSummary, ListModelsRequest, ListModelsResponse,
    ModelInfo, generate_request, generate_response, grid,
};
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::batcher::{Event, frame_of, pitches};
use crate::engine::{Engine, Generation, Melody, Primer, parse_key, parse_meter};
use crate::registry::LoadedModel;

/// The gRPC service over the core.
#[derive(Clone)]
pub struct ComposerService {
    engine: Engine,
}

impl ComposerService {
    pub fn new(engine: Engine) -> ComposerService {
        ComposerService { engine }
    }
}

/// Wire frames as the core takes them, checked here, where their positions in the message
/// (field `field`) can be named.
fn frames_of(field: &str, frames: &Frames) -> Result<Vec<Frame>, Status> {
    frames
        .frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            frame_of(&f.pitches).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{field}.frames[{i}]: pitches must be MIDI {}..={}",
                    pianoroll::LOWEST_PITCH,
                    pianoroll::HIGHEST_PITCH
                ))
            })
        })
        .collect()
}

/// A `GenerateRequest` as the core takes it.
fn generation(request: GenerateRequest) -> Result<Generation, Status> {
    let primer = match request.primer {
        None => Primer::None,
        Some(generate_request::Primer::PrimerMidi(bytes)) => Primer::Midi(bytes),
        Some(generate_request::Primer::PrimerFrames(frames)) => {
            Primer::Frames(frames_of("primer_frames", &frames)?)
        }
    };
    let melody = match request.melody {
        None => None,
        Some(generate_request::Melody::MelodyMidi(bytes)) => Some(Melody::Midi(bytes)),
        Some(generate_request::Melody::MelodyFrames(frames)) => {
            Some(Melody::Frames(frames_of("melody_frames", &frames)?))
        }
    };
    Ok(Generation {
        model: request.model,
        frames: request.frames,
        temperature: request.temperature,
        seed: request.seed,
        primer,
        tempo_bpm: request.tempo_bpm,
        key: parse_key("key", &request.key)?,
        meter: parse_meter("meter", &request.meter)?,
        chunk_frames: request.chunk_frames,
        melody,
    })
}

fn wire_frames(frames: &[Frame]) -> Vec<WireFrame> {
    frames
        .iter()
        .map(|&f| WireFrame {
            pitches: pitches(f),
        })
        .collect()
}

/// What a generation's summary says of its model and setting; the counts are the caller's.
fn summary(model: &LoadedModel, setting: pianoroll::setting::Setting) -> GenerateSummary {
    let grid = model.card.roll_settings.grid;
    GenerateSummary {
        model: model.name.clone(),
        execution_provider: model.provider.name().to_owned(),
        key: setting.key.name(),
        meter: setting.meter.to_string(),
        tempo_bpm: pianoroll::midi::written_tempo_bpm(grid, setting.tempo_bpm),
        ..Default::default()
    }
}

fn model_info(model: &LoadedModel) -> ModelInfo {
    let card = &model.card;
    let step = match card.roll_settings.grid {
        Grid::Beats { frames_per_beat } => grid::Step::FramesPerBeat(frames_per_beat),
        Grid::Seconds { micros } => grid::Step::FrameMicros(micros),
    };
    let m = &card.metrics;
    let metrics = [
        ("parameters", Some(m.parameters as f64)),
        ("epoch", m.epoch.map(|e| e as f64)),
        ("valid_nll_per_frame", m.valid_nll_per_frame),
        ("test_nll_per_frame", m.test_nll_per_frame),
        ("test_frame_accuracy", m.test_frame_accuracy),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
    .collect();
    ModelInfo {
        name: model.name.clone(),
        kind: card.kind.clone(),
        grid: Some(proto::pianoroll_v1::Grid { step: Some(step) }),
        transpose: match card.roll_settings.transpose {
            Transpose::ToC => "to_c",
            Transpose::None => "none",
        }
        .to_owned(),
        metrics,
        execution_provider: model.provider.name().to_owned(),
        lowest_pitch: u32::from(card.lowest_pitch),
        pitch_count: card.pitch_count as u32,
        head: card.head.to_string(),
        batch_invariance: Some(proto::pianoroll_v1::BatchInvariance {
            bit_identical: model.invariance.bit_identical(),
            largest_logit_difference: model.invariance.largest_difference,
            compared: model.invariance.compared as u32,
            rows: model.invariance.rows as u32,
            steps: model.invariance.steps as u32,
            padded_to: model.invariance.padded_to.unwrap_or(0) as u32,
        }),
        step: model.step.clone(),
    }
}

type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Composer for ComposerService {
    async fn list_models(
        &self,
        _request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        self.engine.counted(
            "ListModels",
            "",
            Ok(Response::new(ListModelsResponse {
                models: self.engine.models().values().map(model_info).collect(),
            })),
        )
    }

    type GenerateStream = GenerateStream;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateStream>, Status> {
        let request = request.into_inner();
        let model = request.model.clone();
        let started = generation(request).and_then(|g| self.engine.start(&g));
        let started = self.engine.counted("Generate", &model, started)?;
        let primer_frames = started.primer.len();
        let about = summary(started.model, started.trip.setting);
        let mut generated = 0;
        let stream = started.events().map(move |event| {
            let event = match event {
                Event::Frames { first, frames } => {
                    generated = first + frames.len();
                    generate_response::Event::Chunk(FrameChunk {
                        first_frame: first as u32,
                        frames: wire_frames(&frames),
                    })
                }
                Event::Done { seconds } => generate_response::Event::Summary(GenerateSummary {
                    primer_frames: primer_frames as u32,
                    generated_frames: generated as u32,
                    seconds,
                    ..about.clone()
                }),
                Event::Failed(message) => {
                    return Err(Status::internal(format!("the model failed: {message}")));
                }
            };
            Ok(GenerateResponse { event: Some(event) })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn compose(
        &self,
        request: Request<ComposeRequest>,
    ) -> Result<Response<ComposeResponse>, Status> {
        let request = request.into_inner();
        let model = model_named(&request);
        let result = self.compose_piece(request).await;
        self.engine.counted("Compose", &model, result)
    }

    async fn harmonize(
        &self,
        request: Request<ComposeRequest>,
    ) -> Result<Response<ComposeResponse>, Status> {
        let request = request.into_inner();
        let model = model_named(&request);
        let result = match request.generation.as_ref().map(|g| g.melody.is_some()) {
            Some(true) => self.compose_piece(request).await,
            _ => Err(Status::invalid_argument(
                "generation.melody_midi: Harmonize needs a melody (melody_midi or melody_frames)",
            )),
        };
        self.engine.counted("Harmonize", &model, result)
    }
}

/// The model a `ComposeRequest` names, for counting it ("" when it names none).
fn model_named(request: &ComposeRequest) -> String {
    request
        .generation
        .as_ref()
        .map(|g| g.model.clone())
        .unwrap_or_default()
}

impl ComposerService {
    /// `Compose`, uncounted: `count` pieces, started together so the batcher runs them as one
    /// batch, each written as the first is.
    async fn compose_piece(
        &self,
        request: ComposeRequest,
    ) -> Result<Response<ComposeResponse>, Status> {
        let generation = generation(
            request
                .generation
                .ok_or_else(|| Status::invalid_argument("generation: missing"))?,
        )?;
        let wav = match request.audio.as_str() {
            "" => false,
            "wav" => true,
            other => {
                return Err(Status::invalid_argument(format!(
                    "audio: {other:?} is not a format this server writes (\"wav\", or \"\" for none)"
                )));
            }
        };
        let count = request.count.max(1);
        let limit = self.engine.limits().max_concurrent;
        if count as usize > limit {
            return Err(Status::invalid_argument(format!(
                "count: {count} pieces, this server generates at most {limit} at once"
            )));
        }
        let seeds = generation.seed
            ..=generation
                .seed
                .checked_add(u64::from(count) - 1)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "count: {count} pieces from seed {} pass the largest seed",
                        generation.seed
                    ))
                })?;
        // All started before any is awaited: they join the batch together. Dropping them on a
        // refusal cancels those already queued.
        let started = seeds
            .clone()
            .map(|seed| {
                self.engine.start(&Generation {
                    seed,
                    ..generation.clone()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if wav {
            let first = &started[0];
            let frames = (first.primer.len() + first.frames) * count as usize;
            self.engine
                .check_audio_fits(first.model, frames, first.trip.setting.tempo_bpm)?;
        }
        let mut pieces = Vec::with_capacity(started.len());
        for (seed, started) in seeds.zip(started) {
            let piece = started.finish().await?;
            let model = piece.model;
            pieces.push(ComposedPiece {
                seed,
                midi: piece.midi(),
                png: if request.png { piece.png() } else { Vec::new() },
                audio: if wav {
                    self.engine
                        .render_audio(model, piece.roll(), piece.trip.setting.tempo_bpm)
                        .await?
                } else {
                    Vec::new()
                },
                summary: Some(GenerateSummary {
                    primer_frames: piece.primer_frames as u32,
                    generated_frames: piece.generated().len() as u32,
                    seconds: piece.seconds,
                    ..summary(model, piece.trip.setting)
                }),
            });
        }
        let mut pieces = pieces.into_iter();
        let first = pieces.next().expect("count is at least 1");
        Ok(Response::new(ComposeResponse {
            midi: first.midi,
            png: first.png,
            audio: first.audio,
            summary: first.summary,
            more: pieces.collect(),
        }))
    }
}
