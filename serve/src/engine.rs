//! The generation core that every API calls: `pianoroll.v1` over gRPC ([`crate::service`]),
//! the Open Inference Protocol ([`crate::inference`]) and the page ([`crate::http`]). Requests
//! arrive here as plain Rust values ([`Generation`]), are checked against the server's
//! [`Limits`] with the status codes clients can act on, take a generation slot and join their
//! model's batcher; a finished [`Piece`] is written as MIDI, PNG or WAV here too. The API
//! modules only translate their messages to and from these types, so a rule (a limit, a
//! default, how a primer is read) has one home.
//!
//! A piece's key, meter and tempo ([`pianoroll::setting`]) come from the request, else the
//! MIDI primer, else C major, 4/4 and 120: the model works in the key it was trained in, and
//! every frame that leaves here (streamed, written, the primer's echo) is moved to the piece's
//! key ([`Started::events`], [`Started::finish`]).
//!
//! A generation with a [`Melody`] harmonises it: the melody's highest line is kept on top of
//! every frame it covers ([`pianoroll::melody`]: the note forced on, the keys above it off,
//! through the uniforms the step graph samples with, so any exported model can do it), and the
//! model writes the rest. Its key, meter and tempo play the primer's part in the piece's setting.

use std::collections::BTreeMap;
use std::sync::Arc;

use pianoroll::key::KeyName;
use pianoroll::melody::{melody_constraints, top_line};
use pianoroll::meter::Meter;
use pianoroll::render::{PngOptions, render_png};
use pianoroll::setting::{Asked, RoundTrip};
use pianoroll::{Frame, PianoRoll, write_midi};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::batcher::{Event, Job, Slots};
use crate::metrics::Requests;
use crate::registry::LoadedModel;

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

/// One generation, as every API asks for it.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    pub model: String,
    /// Frames to generate after the primer; with a melody, 0 means as many as the melody has
    /// (frames past its end are the model's alone).
    pub frames: u32,
    /// Sampling temperature (default 1).
    pub temperature: Option<f32>,
    pub seed: u64,
    pub primer: Primer,
    /// Tempo of the written MIDI and audio on a beat grid (default: the MIDI primer's, else
    /// 120 bpm).
    pub tempo_bpm: Option<f64>,
    /// The key the piece is written in (default: the MIDI primer's, else C major).
    pub key: Option<KeyName>,
    /// Its time signature (default: the MIDI primer's, else 4/4).
    pub meter: Option<Meter>,
    /// Frames per batcher event (0: the default, 16).
    pub chunk_frames: u32,
    /// A melody to harmonise (no primer then): its highest line stays on top of the piece.
    pub melody: Option<Melody>,
}

/// A melody to harmonise: the highest line of this music is the melody.
#[derive(Clone, Debug)]
pub enum Melody {
    /// A MIDI file, read onto the model's grid as a primer is.
    Midi(Vec<u8>),
    /// Frames already on the model's grid, in the key it works in.
    Frames(Vec<Frame>),
}

/// A request's `key` field: empty for none, else a key name ("D", "F# minor").
pub fn parse_key(field: &str, text: &str) -> Result<Option<KeyName>, Status> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

/// A request's `meter` field: empty for none, else a time signature ("6/8").
pub fn parse_meter(field: &str, text: &str) -> Result<Option<Meter>, Status> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e: pianoroll::meter::MeterError| {
            Status::invalid_argument(format!("{field}: {text:?}: {e}"))
        })
}

/// What a generation continues.
#[derive(Clone, Debug, Default)]
pub enum Primer {
    /// Nothing: the generation starts from a silent frame.
    #[default]
    None,
    /// A MIDI file, read onto the model's grid.
    Midi(Vec<u8>),
    /// Frames already on the model's grid, in the key it works in.
    Frames(Vec<Frame>),
}

/// Music a request brings, a primer or a melody, before it is read.
enum Music<'a> {
    None,
    Midi(&'a [u8]),
    Frames(&'a [Frame]),
}

impl Primer {
    fn music(&self) -> Music<'_> {
        match self {
            Primer::None => Music::None,
            Primer::Midi(bytes) => Music::Midi(bytes),
            Primer::Frames(frames) => Music::Frames(frames),
        }
    }
}

impl Melody {
    fn music(&self) -> Music<'_> {
        match self {
            Melody::Midi(bytes) => Music::Midi(bytes),
            Melody::Frames(frames) => Music::Frames(frames),
        }
    }
}

/// The core: the models, their slots and limits, audio, request counts. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    models: Arc<BTreeMap<String, LoadedModel>>,
    slots: Slots,
    limits: Limits,
    /// What pieces are played with.
    synth: pianoroll::audio::Synth,
    /// Audio renders allowed at once ([`Engine::render_audio`]).
    audio_renders: Arc<tokio::sync::Semaphore>,
    /// Requests by method, model and status, for the metrics.
    requests: Arc<Requests>,
}

/// A validated request, queued on its model's batcher.
pub struct Started<'a> {
    pub model: &'a LoadedModel,
    /// The primer's frames, on the model's grid, in the piece's key.
    pub primer: Vec<Frame>,
    /// The piece's setting, and the move from the model's frames to its key.
    pub trip: RoundTrip,
    /// Frames to generate after the primer.
    pub frames: usize,
    /// The generated frames as the batcher sends them (in the model's key); dropping this
    /// cancels the generation.
    events: tokio::sync::mpsc::UnboundedReceiver<Event>,
}

impl<'a> Started<'a> {
    /// The generated frames as they are sampled, in the piece's key; dropping the stream
    /// cancels the generation.
    pub fn events(self) -> impl Stream<Item = Event> + Send + use<> {
        let trip = self.trip;
        tokio_stream::wrappers::UnboundedReceiverStream::new(self.events).map(move |event| {
            match event {
                Event::Frames { first, frames } => Event::Frames {
                    first,
                    frames: trip.frames(&frames),
                },
                other => other,
            }
        })
    }

    /// Wait for the whole piece.
    pub async fn finish(mut self) -> Result<Piece<'a>, Status> {
        let primer_frames = self.primer.len();
        let mut frames = self.primer;
        let seconds = loop {
            match self.events.recv().await {
                Some(Event::Frames { frames: chunk, .. }) => {
                    frames.extend(chunk.into_iter().map(|f| self.trip.frame(f)))
                }
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
            trip: self.trip,
            seconds,
        })
    }
}

/// A finished generation.
pub struct Piece<'a> {
    pub model: &'a LoadedModel,
    pub primer_frames: usize,
    /// The primer's frames, then the generated ones, in the piece's key.
    pub frames: Vec<Frame>,
    /// The piece's key, meter and tempo, and how its frames were moved there.
    pub trip: RoundTrip,
    /// From accepting the request to the last frame.
    pub seconds: f64,
}

impl Piece<'_> {
    pub fn generated(&self) -> &[Frame] {
        &self.frames[self.primer_frames..]
    }

    /// The whole piece as a roll.
    pub fn roll(&self) -> PianoRoll {
        PianoRoll::from_frames(self.frames.clone())
    }

    /// The piece as a PNG picture, bar lines after its meter, the primer's end marked.
    pub fn png(&self) -> Vec<u8> {
        render_png(
            &self.roll(),
            &PngOptions {
                primer_frames: self.primer_frames,
                bars: Some(self.trip.bars(self.model.card.roll_settings.grid)),
                ..Default::default()
            },
        )
    }

    /// The piece as a Standard MIDI File with its tempo, key and time signature, titled with
    /// the model that wrote it.
    pub fn midi(&self) -> Vec<u8> {
        let title = proto::card::piece_title(&self.model.name, &self.model.card.kind);
        write_midi(
            &self.roll(),
            self.model.card.roll_settings.grid,
            &self.trip.midi_options(Some(&title)),
        )
    }
}

impl Engine {
    pub fn new(
        models: Arc<BTreeMap<String, LoadedModel>>,
        limits: Limits,
        synth: pianoroll::audio::Synth,
    ) -> Engine {
        Engine {
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
        let stats: Vec<_> = self.models.values().map(|m| m.batcher.stats()).collect();
        let series: Vec<_> = self
            .models
            .values()
            .zip(&stats)
            .map(|(m, stats)| crate::metrics::ModelSeries {
                name: &m.name,
                kind: &m.card.kind,
                head: m.card.head.as_str(),
                provider: m.provider.name(),
                stats,
            })
            .collect();
        crate::metrics::render(&series, self.slots.in_use(), &self.requests)
    }

    /// The served models, by name.
    pub fn models(&self) -> &BTreeMap<String, LoadedModel> {
        &self.models
    }

    /// Count a request's outcome.
    pub fn counted<T>(
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

    pub fn model(&self, name: &str) -> Result<&LoadedModel, Status> {
        self.models.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            Status::not_found(format!(
                "model: no model named {name:?} (this server has: {})",
                known.join(", ")
            ))
        })
    }

    /// The frames of `music` (the request's `field`: `primer` or `melody`, its MIDI file
    /// `FIELD_midi`) on `model`'s grid, in the key the model works in (a MIDI file is moved to C
    /// for a model trained in C), within the frame limit; and the MIDI file as read, for its key,
    /// meter and tempo.
    fn read_music(
        &self,
        field: &str,
        music: Music<'_>,
        model: &LoadedModel,
    ) -> Result<(Vec<Frame>, Option<pianoroll::Piece>), Status> {
        let (frames, read) = match music {
            Music::None => (Vec::new(), None),
            Music::Midi(bytes) => {
                let piece = pianoroll::read_midi(bytes, &model.card.roll_settings)
                    .map_err(|e| Status::invalid_argument(format!("{field}_midi: {e}")))?;
                (piece.roll.frames().to_vec(), Some(piece))
            }
            Music::Frames(frames) => (frames.to_vec(), None),
        };
        if frames.len() > self.limits.max_frames {
            return Err(Status::resource_exhausted(format!(
                "{field}: {} frames, this server accepts at most {}",
                frames.len(),
                self.limits.max_frames
            )));
        }
        Ok((frames, read))
    }

    /// Whether the WAV of a piece of `frames` frames (primer and generated) on `model`'s grid
    /// fits in a response; checked before anything is generated or rendered, since the size
    /// follows from the frame count alone.
    pub fn check_audio_fits(
        &self,
        model: &LoadedModel,
        frames: usize,
        tempo_bpm: Option<f64>,
    ) -> Result<(), Status> {
        let bytes =
            pianoroll::audio::wav_len(frames, model.card.roll_settings.grid, tempo_bpm) as f64;
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
    pub async fn render_audio(
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
            pianoroll::audio::render_wav(&roll, grid, tempo_bpm, &synth)
        })
        .await
        .map_err(|e| Status::internal(format!("rendering audio: {e}")))
    }

    /// The limits this server enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validate `request`, take a slot and queue the generation.
    pub fn start(&self, request: &Generation) -> Result<Started<'_>, Status> {
        let model = self.model(&request.model)?;
        // A melody stands where a primer would: its setting is the piece's, and each of its
        // frames constrains one generated frame.
        let (melody, melody_read) = match &request.melody {
            Some(melody) => {
                if !matches!(request.primer, Primer::None) {
                    return Err(Status::invalid_argument(
                        "primer: a harmonisation takes a melody and no primer",
                    ));
                }
                let (frames, read) = self.read_music("melody", melody.music(), model)?;
                if frames.iter().all(|f| f.is_empty()) {
                    return Err(Status::invalid_argument(
                        "melody: no note sounds in it, so there is nothing to harmonise",
                    ));
                }
                (frames, read)
            }
            None => (Vec::new(), None),
        };
        let frames = match request.frames as usize {
            0 if request.melody.is_some() => melody.len(),
            n => n,
        };
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
        let (primer, primer_read) = self.read_music("primer", request.primer.music(), model)?;
        let trip = RoundTrip::new(
            primer_read.as_ref().or(melody_read.as_ref()),
            &Asked {
                key: request.key,
                meter: request.meter,
                tempo_bpm: request.tempo_bpm,
            },
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
            start: proto::sampling::start_frames(&primer, model.card.silent_start),
            frames,
            temperature,
            seed: request.seed,
            chunk_frames,
            constraints: melody_constraints(&top_line(&melody)),
            events: sender,
            slot,
        };
        model
            .batcher
            .submit(job)
            .map_err(|_| Status::unavailable("the server is shutting down"))?;
        Ok(Started {
            model,
            primer: trip.frames(&primer),
            trip,
            frames,
            events,
        })
    }
}
