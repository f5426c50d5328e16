//! `serve --http ADDR`: a web page to generate, see and hear music, and the small HTTP API it
//! uses. The API is a thin translation onto the generation core ([`crate::engine`]), so a page
//! request runs on the same batchers, validation and limits as a gRPC one:
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the page (`serve/web/index.html`, built into the binary: no CDN) |
//! | `GET /api/models` | JSON: `[{name, kind, head, frames_per_beat, test_nll_per_frame}]` |
//! | `POST /api/generate?model=M&frames=N&temperature=T&seed=S&key=K&meter=M&harmonize=true`, body: a primer MIDI file or nothing; with `harmonize=true` a melody MIDI file whose top line the model harmonises (`frames=0`: as many frames as the melody) | NDJSON, one object a line: `{"primer": [[pitch, ...], ...], "setting": {"key": "D major", "meter": "6/8", "tempo_bpm": 120, "bar_frames": 6}}` (the piece's key, meter, tempo and frames a bar: from `key` and `meter`, else the primer's, else C major, 4/4, 120), then `{"first": i, "frames": [...]}` as frames are sampled (in the piece's key), then `{"done": {"seconds": s}}`, or `{"error": "..."}` |
//! | `POST /api/render?model=M&format=wav\|mid&key=K&meter=M&tempo_bpm=B`, body: JSON `[[pitch, ...], ...]` | the roll as a WAV (the server's SoundFont) or MIDI file on that model's grid, written with that key signature, time signature and tempo (default C major, 4/4, 120; the notes are not moved); 413 beyond a primer and a generation of `--max-frames` each, or a WAV over `--max-response-bytes` |
//!
//! Errors before a stream starts are JSON `{"error": "..."}` with the HTTP status of the gRPC
//! code (400 bad argument, 404 unknown model, 429 over a limit, 503 shutting down), or 401
//! without the server's token, 413 for a body or roll over the limits, 400 for a query string
//! that cannot be read.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

use crate::auth::RequireToken;
use crate::batcher::{Event, frame_of};
use crate::engine::{Engine, Generation, Melody, Primer, parse_key, parse_meter};

const INDEX_HTML: &str = include_str!("../web/index.html");

/// The page and its API over the generation core. With a token, every API call needs it (the
/// page itself is static HTML, open, and asks for the token).
pub fn router(engine: Engine, token: RequireToken, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/api/models", get(list_models))
        .route("/api/generate", post(generate))
        .route("/api/render", post(render))
        .layer(axum::middleware::from_fn_with_state(
            token,
            crate::auth::require_token_http,
        ));
    Router::new()
        .route("/", get(index))
        .merge(api)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(engine)
}

/// `GET /metrics`: the operators' metrics ([`crate::metrics`]), behind the token when there is
/// one (Prometheus sends it with `authorization: credentials_file`).
pub fn metrics_router(engine: Engine, token: RequireToken) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = engine.metrics();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            token,
            crate::auth::require_token_http,
        ))
        .fallback(not_found)
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such page".to_owned())
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
}

/// An error as the page reads it: JSON `{"error": message}` with the status of its gRPC code.
pub(crate) fn error_response(status: &Status) -> Response {
    let code = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_error(code, status.message().to_owned())
}

/// An error as JSON `{"error": message}`, as every answer of the API that is not a success.
pub(crate) fn json_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// 413: a request larger than this server accepts.
fn too_large(message: String) -> Response {
    json_error(StatusCode::PAYLOAD_TOO_LARGE, message)
}

/// A query string or body that axum could not read, as the API's JSON error: 413 for a body
/// over the limit, 400 otherwise, the message naming what was wrong.
pub(crate) fn rejected(rejection: impl IntoResponse + std::fmt::Display) -> Response {
    let message = rejection.to_string();
    let status = rejection.into_response().status();
    json_error(status, message)
}

async fn list_models(State(engine): State<Engine>) -> Response {
    let models: Vec<serde_json::Value> = engine
        .models()
        .values()
        .map(|m| {
            let frames_per_beat = match m.card.roll_settings.grid {
                pianoroll::Grid::Beats { frames_per_beat } => Some(frames_per_beat),
                pianoroll::Grid::Seconds { .. } => None,
            };
            serde_json::json!({
                "name": m.name,
                "kind": m.card.kind,
                "head": m.card.head,
                "frames_per_beat": frames_per_beat,
                "test_nll_per_frame": m.card.metrics.test_nll_per_frame,
            })
        })
        .collect();
    axum::Json(models).into_response()
}

#[derive(Deserialize)]
struct GenerateParams {
    model: String,
    frames: u32,
    temperature: Option<f32>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    key: String,
    #[serde(default)]
    meter: String,
    /// The body is a melody to harmonise, not a primer.
    #[serde(default)]
    harmonize: bool,
}

fn pitches(frames: &[pianoroll::Frame]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f.pitches().collect()).collect()
}

fn line(value: serde_json::Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&value).expect("JSON serialises");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

async fn generate(
    State(engine): State<Engine>,
    params: Result<Query<GenerateParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (params, body) = match (params, body) {
        (Ok(Query(params)), Ok(body)) => (params, body),
        (Err(rejection), _) => return rejected(rejection),
        (_, Err(rejection)) => return rejected(rejection),
    };
    let (key, meter) = match (
        parse_key("key", &params.key),
        parse_meter("meter", &params.meter),
    ) {
        (Ok(key), Ok(meter)) => (key, meter),
        (Err(status), _) | (_, Err(status)) => return error_response(&status),
    };
    let generation = Generation {
        model: params.model,
        frames: params.frames,
        temperature: params.temperature,
        seed: params.seed,
        primer: if body.is_empty() || params.harmonize {
            Primer::None
        } else {
            Primer::Midi(body.to_vec())
        },
        tempo_bpm: None,
        key,
        meter,
        chunk_frames: 8,
        melody: params.harmonize.then(|| Melody::Midi(body.to_vec())),
    };
    // Counted as what it is: a streamed generation, like gRPC's `Generate`.
    let model = generation.model.clone();
    let started = match engine.counted("Generate", &model, engine.start(&generation)) {
        Ok(started) => started,
        Err(status) => return error_response(&status),
    };
    // The page draws the primer as the server read it, in the piece's key, with its bar lines,
    // and renders the piece with its setting.
    let setting = started.trip.setting;
    let grid = started.model.card.roll_settings.grid;
    let first = tokio_stream::once(line(serde_json::json!({
        "primer": pitches(&started.primer),
        "setting": {
            "key": setting.key.name(),
            "meter": setting.meter.to_string(),
            "tempo_bpm": pianoroll::midi::written_tempo_bpm(grid, setting.tempo_bpm),
            "bar_frames": started.trip.bars(grid).length(),
        },
    })));
    let rest = started.events().map(|event| match event {
        Event::Frames { first, frames } => line(serde_json::json!({
            "first": first,
            "frames": pitches(&frames),
        })),
        Event::Done { seconds } => line(serde_json::json!({ "done": { "seconds": seconds } })),
        Event::Failed(message) => {
            line(serde_json::json!({ "error": format!("the model failed: {message}") }))
        }
    });
    let body = Body::from_stream(first.chain(rest).map(Ok::<_, std::convert::Infallible>));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

#[derive(Deserialize)]
struct RenderParams {
    model: String,
    format: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    meter: String,
    tempo_bpm: Option<f64>,
}

async fn render(
    State(engine): State<Engine>,
    params: Result<Query<RenderParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (params, body) = match (params, body) {
        (Ok(Query(params)), Ok(body)) => (params, body),
        (Err(rejection), _) => return rejected(rejection),
        (_, Err(rejection)) => return rejected(rejection),
    };
    let model = match engine.model(&params.model) {
        Ok(model) => model,
        Err(status) => return error_response(&status),
    };
    // The roll is the piece as the page holds it, already in its key: written as it is.
    let setting = match render_setting(&params) {
        Ok(setting) => setting,
        Err(status) => return error_response(&status),
    };
    let frames: Vec<Vec<u32>> = match serde_json::from_slice(&body) {
        Ok(frames) => frames,
        Err(e) => {
            return error_response(&Status::invalid_argument(format!(
                "frames: a JSON list of pitch lists ({e})"
            )));
        }
    };
    // The page renders what this server generated: at most a primer and a generation of the
    // longest length each. Anything longer is refused before a sample is allocated for it.
    let longest = 2 * engine.limits().max_frames;
    if frames.len() > longest {
        return too_large(format!(
            "frames: {} frames; this server renders at most {longest} (a primer and a \
             generation of --max-frames each)",
            frames.len()
        ));
    }
    let frames: Option<Vec<pianoroll::Frame>> = frames.iter().map(|p| frame_of(p)).collect();
    let Some(frames) = frames else {
        return error_response(&Status::invalid_argument(format!(
            "frames: pitches must be MIDI {}..={}",
            pianoroll::LOWEST_PITCH,
            pianoroll::HIGHEST_PITCH
        )));
    };
    let roll = pianoroll::PianoRoll::from_frames(frames);
    let grid = model.card.roll_settings.grid;
    let (bytes, content_type) = match params.format.as_str() {
        "wav" => match engine.render_audio(model, roll, setting.tempo_bpm).await {
            Ok(wav) => (wav, "audio/wav"),
            Err(status) if status.code() == Code::ResourceExhausted => {
                return too_large(status.message().to_owned());
            }
            Err(status) => return error_response(&status),
        },
        "mid" => {
            let title = proto::card::piece_title(&model.name, &model.card.kind);
            let options = pianoroll::midi::MidiWriteOptions {
                title: Some(&title),
                tempo_bpm: setting.tempo_bpm,
                key: Some(setting.key),
                meter: Some(setting.meter),
            };
            (pianoroll::write_midi(&roll, grid, &options), "audio/midi")
        }
        other => {
            return error_response(&Status::invalid_argument(format!(
                "format: {other:?}, not \"wav\" or \"mid\""
            )));
        }
    };
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

/// The key, meter and tempo `/api/render` writes with: the query's, else C major, 4/4, 120.
/// Any positive tempo is taken, not only those a request may ask for: the page sends back the
/// tempo the server gave it, which may be a primer's (a WAV too long is refused by its size).
fn render_setting(params: &RenderParams) -> Result<pianoroll::setting::Setting, Status> {
    let default = pianoroll::setting::Setting::default();
    if let Some(bpm) = params.tempo_bpm
        && !(bpm.is_finite() && bpm > 0.0)
    {
        return Err(Status::invalid_argument(format!(
            "tempo_bpm: must be a positive number, got {bpm}"
        )));
    }
    Ok(pianoroll::setting::Setting {
        key: parse_key("key", &params.key)?
            .map_or(default.key, |name| name.key(pianoroll::key::Mode::Major)),
        meter: parse_meter("meter", &params.meter)?.unwrap_or(default.meter),
        tempo_bpm: params.tempo_bpm,
    })
}
