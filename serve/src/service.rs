//! The `pianoroll.v1.Composer` service: request validation (with the status codes clients can
//! act on), and the translation between batcher events and gRPC messages.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use pipeline::midi::MidiWriteOptions;
use pipeline::render::{PngOptions, render_png};
use pipeline::{Frame, Grid, PianoRoll, Transpose, write_midi};
use proto::pianoroll_v1::composer_server::Composer;
use proto::pianoroll_v1::{
    ComposeRequest, ComposeResponse, Frame as WireFrame, FrameChunk, GenerateRequest,
    GenerateResponse, GenerateSummary, ListModelsRequest, ListModelsResponse, ModelInfo,
    generate_request, generate_response, grid,
};
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};

use crate::batcher::{Event, Job, Slots, frame_of, pitches};
use crate::metrics::Requests;
use crate::registry::LoadedModel;
use crate::runtime::Provider;

/// What one server accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most frames one request may generate, and the longest primer.
    pub max_frames: usize,
    /// Most generations running at once, over all models.
    pub max_concurrent: usize,
    /// Largest request message, bytes (and largest response, except for `Compose`).
    pub max_message_bytes: usize,
    /// Largest `Compose` response, bytes: audio makes them large (a WAV holds 176,400 bytes a
    /// second), so a piece whose audio would not fit is refused before it is generated.
    pub max_response_bytes: usize,
    /// How long a connection may stay silent, keep-alive pings unanswered, before it is closed
    /// (zero: forever). A client that stops reading cannot hold a generation slot longer.
    pub idle_timeout: std::time::Duration,
    /// How long a new connection may take to send its first request: the TLS handshake and the
    /// HTTP/2 preface on gRPC, each request header on the page and the metrics (zero: forever).
    pub handshake_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frames: 10_000,
            max_concurrent: 256,
            max_message_bytes: 4 << 20,
            max_response_bytes: 64 << 20,
            idle_timeout: std::time::Duration::from_secs(60),
            handshake_timeout: std::time::Duration::from_secs(10),
        }
    }
}

const DEFAULT_CHUNK_FRAMES: usize = 16;
const MAX_TEMPO_BPM: f64 = 1_000.0;

#[derive(Clone)]
pub struct ComposerService {
    models: Arc<BTreeMap<String, LoadedModel>>,
    slots: Slots,
    limits: Limits,
    /// What `Compose` and the page play audio with.
    synth: pipeline::audio::Synth,
    /// Audio renders allowed at once ([`ComposerService::render_audio`]).
    audio_renders: Arc<tokio::sync::Semaphore>,
    /// Requests by method, model and status, for the metrics.
    requests: Arc<Requests>,
}

/// A validated request, queued on its model's batcher.
pub(crate) struct Started<'a> {
    model: &'a LoadedModel,
    primer: Vec<Frame>,
    events: tokio::sync::mpsc::UnboundedReceiver<Event>,
}

impl<'a> Started<'a> {
    /// Wait for the whole piece.
    pub(crate) async fn finish(mut self) -> Result<Piece<'a>, Status> {
        let primer_frames = self.primer.len();
        let mut frames = self.primer;
        let seconds = loop {
            match self.events.recv().await {
                Some(Event::Frames { frames: chunk, .. }) => frames.extend(chunk),
                Some(Event::Done { seconds }) => break seconds,
                Some(Event::Failed(message)) => {
                    return Err(Status::internal(format!("the model failed: {message}")));
                }
                None => return Err(Status::internal("the generation stopped unexpectedly")),
            }
        };
        Ok(Piece {
            model: self.model,
            primer_frames,
            frames,
            seconds,
        })
    }
}

/// A finished generation.
pub(crate) struct Piece<'a> {
    pub model: &'a LoadedModel,
    pub primer_frames: usize,
    /// The primer's frames, then the generated ones.
    pub frames: Vec<Frame>,
    /// From accepting the request to the last frame.
    pub seconds: f64,
}

impl Piece<'_> {
    pub fn generated(&self) -> &[Frame] {
        &self.frames[self.primer_frames..]
    }

    /// The piece as a Standard MIDI File, titled with the model that wrote it.
    pub fn midi(&self, tempo_bpm: Option<f64>) -> Vec<u8> {
        let title = proto::card::piece_title(&self.model.name, &self.model.card.kind);
        write_midi(
            &PianoRoll::from_frames(self.frames.clone()),
            self.model.card.roll_settings.grid,
            &MidiWriteOptions {
                tempo_bpm,
                title: Some(&title),
                key: None,
            },
        )
    }
}

fn wire_frames(frames: &[Frame]) -> Vec<WireFrame> {
    frames
        .iter()
        .map(|&f| WireFrame {
            pitches: pitches(f),
        })
        .collect()
}

fn summary(
    model: &str,
    provider: Provider,
    primer: usize,
    generated: usize,
    seconds: f64,
) -> GenerateSummary {
    GenerateSummary {
        model: model.to_owned(),
        primer_frames: primer as u32,
        generated_frames: generated as u32,
        seconds,
        execution_provider: provider.name().to_owned(),
    }
}

impl ComposerService {
    pub fn new(
        models: Arc<BTreeMap<String, LoadedModel>>,
        limits: Limits,
        synth: pipeline::audio::Synth,
    ) -> ComposerService {
        ComposerService {
            models,
            slots: Slots::new(limits.max_concurrent),
            limits,
            synth,
            audio_renders: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            requests: Arc::new(Requests::default()),
        }
    }

    /// The operators' metrics as Prometheus text ([`crate::metrics`]).
    pub fn metrics(&self) -> String {
        crate::metrics::render(&self.models, &self.slots, &self.requests)
    }

    /// Count a request's outcome.
    pub(crate) fn counted<T>(
        &self,
        method: &'static str,
        model: &str,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        // A name no model has is counted as one series, whatever it is: the labels stay a
        // bounded set however many names clients make up.
        let label = if model.is_empty() || self.models.contains_key(model) {
            model
        } else {
            crate::metrics::UNKNOWN_MODEL
        };
        self.requests.record(method, label, code);
        result
    }

    pub(crate) fn model(&self, name: &str) -> Result<&LoadedModel, Status> {
        self.models.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            Status::not_found(format!(
                "model: no model named {name:?} (this server has: {})",
                known.join(", ")
            ))
        })
    }

    fn primer(&self, request: &GenerateRequest, model: &LoadedModel) -> Result<Vec<Frame>, Status> {
        let frames = match &request.primer {
            None => Vec::new(),
            Some(generate_request::Primer::PrimerMidi(bytes)) => {
                pipeline::read_midi(bytes, &model.card.roll_settings)
                    .map_err(|e| Status::invalid_argument(format!("primer_midi: {e}")))?
                    .roll
                    .frames()
                    .to_vec()
            }
            Some(generate_request::Primer::PrimerFrames(frames)) => frames
                .frames
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    frame_of(&f.pitches).ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "primer_frames.frames[{i}]: pitches must be MIDI {}..={}",
                            pipeline::LOWEST_PITCH,
                            pipeline::HIGHEST_PITCH
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if frames.len() > self.limits.max_frames {
            return Err(Status::resource_exhausted(format!(
                "primer: {} frames, this server accepts at most {}",
                frames.len(),
                self.limits.max_frames
            )));
        }
        Ok(frames)
    }

    /// Whether the WAV of a piece of `frames` frames (primer and generated) on `model`'s grid
    /// fits in a response; checked before anything is generated or rendered, since the size
    /// follows from the frame count alone.
    pub(crate) fn check_audio_fits(
        &self,
        model: &LoadedModel,
        frames: usize,
        tempo_bpm: Option<f64>,
    ) -> Result<(), Status> {
        let bytes =
            pipeline::audio::wav_len(frames, model.card.roll_settings.grid, tempo_bpm) as f64;
        // Room for the MIDI file and the PNG beside the audio.
        let room = self.limits.max_response_bytes.saturating_sub(1 << 20) as f64;
        if bytes > room {
            return Err(Status::resource_exhausted(format!(
                "audio: {frames} frames make a WAV of {:.1} MB; this server answers with at most \
                 {:.1} MB (--max-response-bytes): ask for fewer frames, or no audio",
                bytes / 1e6,
                room / 1e6
            )));
        }
        Ok(())
    }

    /// `roll` as a WAV file on `model`'s grid, once its size is known to fit a response. At
    /// most one render per core runs at once (the others wait): rendering is CPU work, and each
    /// holds its samples in memory until it is done.
    pub(crate) async fn render_audio(
        &self,
        model: &LoadedModel,
        roll: PianoRoll,
        tempo_bpm: Option<f64>,
    ) -> Result<Vec<u8>, Status> {
        self.check_audio_fits(model, roll.len(), tempo_bpm)?;
        let _permit = self
            .audio_renders
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the server is shutting down"))?;
        let synth = self.synth.clone();
        let grid = model.card.roll_settings.grid;
        tokio::task::spawn_blocking(move || {
            pipeline::audio::render_wav(&roll, grid, tempo_bpm, &synth)
        })
        .await
        .map_err(|e| Status::internal(format!("rendering audio: {e}")))
    }

    /// The limits this service enforces.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validate `request`, take a slot and queue the generation.
    pub(crate) fn start(&self, request: &GenerateRequest) -> Result<Started<'_>, Status> {
        let model = self.model(&request.model)?;
        let frames = request.frames as usize;
        if frames == 0 {
            return Err(Status::invalid_argument("frames: must be at least 1"));
        }
        if frames > self.limits.max_frames {
            return Err(Status::resource_exhausted(format!(
                "frames: {frames} requested, this server generates at most {} per request",
                self.limits.max_frames
            )));
        }
        let temperature = request.temperature.unwrap_or(1.0);
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Status::invalid_argument(format!(
                "temperature: must be a positive number, got {temperature}"
            )));
        }
        if let Some(bpm) = request.tempo_bpm
            && !(bpm.is_finite() && bpm > 0.0 && bpm <= MAX_TEMPO_BPM)
        {
            return Err(Status::invalid_argument(format!(
                "tempo_bpm: must be in (0, {MAX_TEMPO_BPM}], got {bpm}"
            )));
        }
        let primer = self.primer(request, model)?;
        let slot = self.slots.try_acquire().ok_or_else(|| {
            Status::resource_exhausted(format!(
                "the server is running its limit of {} generations; try again shortly",
                self.limits.max_concurrent
            ))
        })?;
        let chunk_frames = match request.chunk_frames as usize {
            0 => DEFAULT_CHUNK_FRAMES,
            n => n.min(frames),
        };
        let (sender, events) = tokio::sync::mpsc::unbounded_channel();
        let job = Job {
            start: if primer.is_empty() {
                vec![Frame::SILENT]
            } else {
                primer.clone()
            },
            frames,
            temperature,
            seed: request.seed,
            chunk_frames,
            events: sender,
            slot,
        };
        model
            .batcher
            .submit(job)
            .map_err(|_| Status::unavailable("the server is shutting down"))?;
        Ok(Started {
            model,
            primer,
            events,
        })
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
        head: card.head.clone(),
    }
}

type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Composer for ComposerService {
    async fn list_models(
        &self,
        _request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        self.counted(
            "ListModels",
            "",
            Ok(Response::new(ListModelsResponse {
                models: self.models.values().map(model_info).collect(),
            })),
        )
    }

    type GenerateStream = GenerateStream;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateStream>, Status> {
        let request = request.into_inner();
        let started = self.counted("Generate", &request.model, self.start(&request))?;
        let model = started.model;
        let (name, provider) = (model.name.clone(), model.provider);
        let primer_frames = started.primer.len();
        let mut generated = 0;
        let stream = UnboundedReceiverStream::new(started.events).map(move |event| {
            let event = match event {
                Event::Frames { first, frames } => {
                    generated = first + frames.len();
                    generate_response::Event::Chunk(FrameChunk {
                        first_frame: first as u32,
                        frames: wire_frames(&frames),
                    })
                }
                Event::Done { seconds } => generate_response::Event::Summary(summary(
                    &name,
                    provider,
                    primer_frames,
                    generated,
                    seconds,
                )),
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
        let model = request
            .generation
            .as_ref()
            .map(|g| g.model.clone())
            .unwrap_or_default();
        let result = self.compose_piece(request).await;
        self.counted("Compose", &model, result)
    }
}

impl ComposerService {
    /// `Compose`, uncounted.
    async fn compose_piece(
        &self,
        request: ComposeRequest,
    ) -> Result<Response<ComposeResponse>, Status> {
        let generation = request
            .generation
            .ok_or_else(|| Status::invalid_argument("generation: missing"))?;
        let wav = match request.audio.as_str() {
            "" => false,
            "wav" => true,
            other => {
                return Err(Status::invalid_argument(format!(
                    "audio: {other:?} is not a format this server writes (\"wav\", or \"\" for none)"
                )));
            }
        };
        let started = self.start(&generation)?;
        if wav {
            // Dropping `started` on refusal cancels the generation before its first frames.
            let frames = started.primer.len() + generation.frames as usize;
            self.check_audio_fits(started.model, frames, generation.tempo_bpm)?;
        }
        let piece = started.finish().await?;
        let model = piece.model;
        let roll = PianoRoll::from_frames(piece.frames.clone());
        let midi = piece.midi(generation.tempo_bpm);
        let png = if request.png {
            render_png(
                &roll,
                &PngOptions {
                    primer_frames: piece.primer_frames,
                    ..Default::default()
                },
            )
        } else {
            Vec::new()
        };
        let audio = if wav {
            self.render_audio(model, roll, generation.tempo_bpm).await?
        } else {
            Vec::new()
        };
        Ok(Response::new(ComposeResponse {
            midi,
            png,
            audio,
            summary: Some(summary(
                &model.name,
                model.provider,
                piece.primer_frames,
                piece.generated().len(),
                piece.seconds,
            )),
        }))
    }
}
