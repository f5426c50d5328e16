//! The MIDI ↔ roll mapping.
//!
//! # MIDI → roll
//! 1. Every track and channel is merged, except channel 10 (General MIDI drums), whose notes are
//!    counted and dropped. A note-on with velocity 0 is a note-off.
//! 2. A note-on for a key that is already sounding on the same channel ends the earlier note
//!    there and starts a new one (counted as `retriggered`); a note-off with no note sounding is
//!    ignored (`orphan_note_offs`); a note still sounding at the end of its track ends there
//!    (`unterminated`).
//! 3. Time: on a [`Grid::Beats`] grid a tick is `frames_per_beat / ticks_per_quarter` frames,
//!    whatever the tempo; on a [`Grid::Seconds`] grid ticks go through the tempo map (or the SMPTE
//!    rate) to seconds first. All of it is exact integer arithmetic.
//! 4. **Note → frame rule: a note is on in frame `k` when it sounds at the frame's centre,**
//!    i.e. `start <= (k + ½)·L < end` for frame length `L`. A note therefore covers frames
//!    `c(start) .. c(end)` with `c(x) = ⌈x/L − ½⌉` (at least 0). A note that covers no frame
//!    centre vanishes (counted as `vanished`): every note shorter than half a frame, and some
//!    shorter than a whole one.
//! 5. Key: the first key-signature event (earliest tick, then lowest track); without one, the
//!    Krumhansl–Schmuckler estimate over the duration-weighted pitch classes. With
//!    [`Transpose::ToC`] every note moves by [`Key::transposition_to_c`].
//!    The first time-signature event (same order) is the piece's meter, the first tempo event
//!    (earliest tick; at equal ticks the later track, as in the tempo map) its tempo; neither
//!    changes the roll on a beat grid.
//! 6. Notes outside MIDI 21..=108 (after transposition) are counted and dropped.
//! 7. The roll ends with the frame in which the last note ends.
//!
//! # roll → MIDI
//! [`write_midi`] plays each run of consecutive on-frames of a key as one note spanning exactly
//! those frames, so reading the file back with the same grid (and no transposition, or the key
//! signature it writes) gives the same roll. It writes the tempo, key and time signature it is
//! given at the start (a piece's [`crate::setting::Setting`]).

use midly::num::{u4, u7, u15, u24, u28};
use midly::{
    Format, Header, MetaMessage, MidiMessage, Smf, Timing, Track, TrackEvent, TrackEventKind,
};
use serde::{Deserialize, Serialize};

use crate::grid::{Grid, RollSettings, Transpose};
use crate::key::{Key, KeySource};
use crate::meter::Meter;
use crate::roll::{KEY_COUNT, PianoRoll, key_of_pitch};

/// Why a file could not become a roll. One line each, naming the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MidiError {
    #[error("empty file")]
    Empty,
    #[error("not a MIDI file (no MThd header)")]
    NotMidi,
    #[error("malformed MIDI: {0}")]
    Malformed(String),
    #[error("MIDI format 2 (independent sequences) is not supported")]
    Format2,
    #[error("zero ticks per quarter note in the header")]
    ZeroTicksPerQuarter,
    #[error("zero ticks per SMPTE frame in the header")]
    ZeroTicksPerSmpteFrame,
    #[error(
        "SMPTE time division ({fps} fps) has no beat to follow; use a seconds grid (--seconds)"
    )]
    SmpteWithBeatGrid { fps: u8 },
    #[error("tempo event of 0 µs per quarter note at tick {tick}")]
    ZeroTempo { tick: u64 },
    #[error(
        "piece would be {frames} frames long, over the limit of {max_frames} (--max-frames); a corrupt delta time?"
    )]
    TooLong { frames: u128, max_frames: usize },
    #[error("no notes left for the roll ({notes} read; drums, off the keyboard or too short)")]
    NoNotes { notes: u64 },
}

/// What happened to the notes of a file; summed per split and per dataset in the manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteCounts {
    /// Pitched (non-drum) notes read from the file.
    pub notes: u64,
    /// Notes that put at least one frame into the roll.
    pub kept: u64,
    /// Notes that covered no frame centre and so left no trace in the roll.
    pub vanished: u64,
    /// Notes outside MIDI 21..=108 after transposition.
    pub out_of_range: u64,
    /// Channel-10 (drum) notes, dropped.
    pub drums: u64,
    /// Note-ons never switched off, ended at the end of their track.
    pub unterminated: u64,
    /// Note-ons on a key already sounding on that channel (the earlier note ends there).
    pub retriggered: u64,
    /// Note-offs with no note sounding, ignored.
    pub orphan_note_offs: u64,
}

impl std::ops::AddAssign for NoteCounts {
    fn add_assign(&mut self, o: NoteCounts) {
        self.notes += o.notes;
        self.kept += o.kept;
        self.vanished += o.vanished;
        self.out_of_range += o.out_of_range;
        self.drums += o.drums;
        self.unterminated += o.unterminated;
        self.retriggered += o.retriggered;
        self.orphan_note_offs += o.orphan_note_offs;
    }
}

/// A MIDI file turned into a roll, with what the dataset row records about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub roll: PianoRoll,
    /// The sequence or first track name, if the file names one.
    pub title: Option<String>,
    /// The key as written (before transposition).
    pub key: Option<Key>,
    pub key_source: KeySource,
    /// Semitones every note was moved by.
    pub transpose: i8,
    /// The first time signature, if the file has one (MIDI's default is 4/4).
    pub meter: Option<Meter>,
    /// Quarter notes per minute of the first tempo event, if the file has one (MIDI's default
    /// is 120).
    pub tempo_bpm: Option<f64>,
    pub counts: NoteCounts,
}

/// A note in ticks, before the grid.
struct TickNote {
    pitch: u8,
    start: u64,
    end: u64,
}

/// Everything collected from one pass over the tracks.
#[derive(Default)]
struct Events {
    notes: Vec<TickNote>,
    /// (tick, µs per quarter note), all tracks.
    tempos: Vec<(u64, u32)>,
    /// (tick, track, sharps, minor) of the earliest key signature.
    key_signature: Option<(u64, usize, i8, bool)>,
    /// (tick, track, meter) of the earliest readable time signature.
    time_signature: Option<(u64, usize, Meter)>,
    title: Option<(usize, String)>,
    counts: NoteCounts,
}

/// Parse a Standard MIDI File and map it to a roll.
pub fn read_midi(bytes: &[u8], settings: &RollSettings) -> Result<Piece, MidiError> {
    if bytes.is_empty() {
        return Err(MidiError::Empty);
    }
    // midly also accepts RIFF-wrapped (RMID) files.
    if !bytes.starts_with(b"MThd") && !bytes.starts_with(b"RIFF") {
        return Err(MidiError::NotMidi);
    }
    check_smpte_rate(bytes)?;
    // midly is fuzzed together with this crate, but a parser bug must cost one file, not a
    // 100,000-file run: a panic inside it becomes this file's error.
    let smf = std::panic::catch_unwind(|| Smf::parse(bytes))
        .map_err(|_| MidiError::Malformed("the MIDI parser failed on this file".into()))?
        .map_err(|e| MidiError::Malformed(e.to_string()))?;
    if smf.header.format == Format::Sequential {
        return Err(MidiError::Format2);
    }
    let clock = Clock::new(smf.header.timing, settings.grid)?;
    let events = collect_events(&smf.tracks);
    let timeline = clock.timeline(&events.tempos)?;

    let (key, key_source) = match events
        .key_signature
        .and_then(|(_, _, sharps, minor)| Key::from_signature(sharps, minor))
    {
        Some(key) => (Some(key), KeySource::Signature),
        None => match Key::estimate(&pitch_class_histogram(&events.notes)) {
            Some(key) => (Some(key), KeySource::Estimated),
            None => (None, KeySource::Unknown),
        },
    };
    let transpose = match (settings.transpose, key) {
        (Transpose::ToC, Some(key)) => key.transposition_to_c(),
        _ => 0,
    };

    // The tempo map's order: by tick, a later track winning a tie.
    let first_tempo = events
        .tempos
        .iter()
        .rev()
        .min_by_key(|&&(tick, _)| tick)
        .map(|&(_, micros)| micros);
    let tempo_bpm = first_tempo
        .filter(|&micros| micros > 0)
        .map(|micros| 60e6 / f64::from(micros));

    let mut counts = events.counts;
    // First pass: frame spans, so an absurd length is refused before anything is allocated.
    let mut spans = Vec::with_capacity(events.notes.len());
    let mut length: u128 = 0;
    for note in &events.notes {
        let pitch = i16::from(note.pitch) + i16::from(transpose);
        let Some(key) = u8::try_from(pitch).ok().and_then(key_of_pitch) else {
            counts.out_of_range += 1;
            continue;
        };
        let first = timeline.frame_at(note.start);
        let end = timeline.frame_at(note.end);
        if end <= first {
            counts.vanished += 1;
            continue;
        }
        counts.kept += 1;
        length = length.max(end);
        spans.push((key, first, end));
    }
    if length > settings.max_frames as u128 {
        return Err(MidiError::TooLong {
            frames: length,
            max_frames: settings.max_frames,
        });
    }
    if length == 0 {
        return Err(MidiError::NoNotes {
            notes: counts.notes,
        });
    }
    // Fill each key's spans in start order, skipping what an earlier span already covered, so
    // the work is bounded by 88 × length even for a hostile file of many long overlapping notes.
    spans.sort_unstable();
    let mut roll = PianoRoll::silent(length as usize);
    let frames = roll.frames_mut();
    let mut filled_until = [0u128; KEY_COUNT];
    for (key, first, end) in spans {
        let from = first.max(filled_until[key]);
        if from < end {
            for frame in &mut frames[from as usize..end as usize] {
                frame.insert(key);
            }
            filled_until[key] = end;
        }
    }
    Ok(Piece {
        roll,
        title: events.title.map(|(_, title)| title),
        key,
        key_source,
        transpose,
        meter: events.time_signature.map(|(_, _, meter)| meter),
        tempo_bpm,
        counts,
    })
}

/// midly 0.5 negates the SMPTE rate byte of every `MThd` chunk as an `i8`, which overflows for
/// 0x80 (a panic in builds with overflow checks). Walk the chunks as midly does and refuse such a
/// header before midly sees it.
fn check_smpte_rate(bytes: &[u8]) -> Result<(), MidiError> {
    let Some(mut at) = bytes.windows(4).take(64).position(|w| w == b"MThd") else {
        return Ok(());
    };
    while let Some(chunk) = at.checked_add(8).and_then(|end| bytes.get(at..end)) {
        if &chunk[..4] == b"MThd" && bytes.get(at + 12) == Some(&0x80) {
            return Err(MidiError::Malformed("invalid SMPTE frame rate -128".into()));
        }
        let length = u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes"));
        at = at.saturating_add(8).saturating_add(length as usize);
    }
    Ok(())
}

const DRUM_CHANNEL: u8 = 9;

fn collect_events(tracks: &[Track]) -> Events {
    let mut events = Events::default();
    for (track_index, track) in tracks.iter().enumerate() {
        // Start tick of the note sounding on (channel, pitch), if any.
        let mut sounding = [[None::<u64>; 128]; 16];
        let mut tick: u64 = 0;
        for event in track {
            tick += u64::from(u32::from(event.delta));
            match event.kind {
                TrackEventKind::Midi { channel, message } => {
                    let channel = channel.as_int();
                    let (pitch, on) = match message {
                        MidiMessage::NoteOn { key, vel } => (key.as_int(), vel.as_int() > 0),
                        MidiMessage::NoteOff { key, .. } => (key.as_int(), false),
                        _ => continue,
                    };
                    if channel == DRUM_CHANNEL {
                        events.counts.drums += u64::from(on);
                        continue;
                    }
                    let slot = &mut sounding[usize::from(channel)][usize::from(pitch)];
                    if let Some(start) = slot.take() {
                        events.notes.push(TickNote {
                            pitch,
                            start,
                            end: tick,
                        });
                        if on {
                            events.counts.retriggered += 1;
                        }
                    } else if !on {
                        events.counts.orphan_note_offs += 1;
                    }
                    if on {
                        events.counts.notes += 1;
                        *slot = Some(tick);
                    }
                }
                TrackEventKind::Meta(MetaMessage::Tempo(tempo)) => {
                    events.tempos.push((tick, tempo.as_int()));
                }
                TrackEventKind::Meta(MetaMessage::KeySignature(sharps, minor)) => {
                    let candidate = (tick, track_index, sharps, minor);
                    if events
                        .key_signature
                        .is_none_or(|(t, i, _, _)| (tick, track_index) < (t, i))
                    {
                        events.key_signature = Some(candidate);
                    }
                }
                TrackEventKind::Meta(MetaMessage::TimeSignature(numerator, power, _, _)) => {
                    // A signature no meter has (0 beats, 1/128 notes) is passed over.
                    if let Some(meter) = Meter::from_midi(numerator, power)
                        && events
                            .time_signature
                            .is_none_or(|(t, i, _)| (tick, track_index) < (t, i))
                    {
                        events.time_signature = Some((tick, track_index, meter));
                    }
                }
                TrackEventKind::Meta(MetaMessage::TrackName(name)) => {
                    let name = decode_text(name);
                    let better = events.title.as_ref().is_none_or(|(i, _)| track_index < *i);
                    if !name.is_empty() && better {
                        events.title = Some((track_index, name));
                    }
                }
                _ => {}
            }
        }
        for channel_notes in &sounding {
            for (pitch, start) in channel_notes.iter().enumerate() {
                if let Some(start) = *start {
                    events.counts.unterminated += 1;
                    events.notes.push(TickNote {
                        pitch: pitch as u8,
                        start,
                        end: tick,
                    });
                }
            }
        }
    }
    events
}

/// MIDI text has no declared encoding: UTF-8 when it is valid UTF-8, otherwise Latin-1
/// (what most old sequencers wrote).
fn decode_text(bytes: &[u8]) -> String {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    };
    text.trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_owned()
}

/// Tick durations per pitch class, the input of the key estimate.
fn pitch_class_histogram(notes: &[TickNote]) -> [f64; 12] {
    let mut histogram = [0.0; 12];
    for note in notes {
        histogram[usize::from(note.pitch % 12)] += (note.end - note.start) as f64;
    }
    histogram
}

/// How ticks become frames, before the tempo map is known.
enum Clock {
    /// scaled(tick) = tick * frames_per_beat; frame = ticks_per_quarter.
    Beats { frames_per_beat: u128, tpq: u128 },
    /// scaled(tick) = µs·tpq through the tempo map; frame = frame_µs·tpq.
    TempoMap { tpq: u128, frame_micros: u128 },
    /// scaled(tick) = tick·10⁶·den; frame = frame_µs·num·ticks_per_smpte_frame,
    /// with the SMPTE rate num/den frames per second.
    Smpte { per_tick: u128, frame: u128 },
}

impl Clock {
    fn new(timing: Timing, grid: Grid) -> Result<Clock, MidiError> {
        match (timing, grid) {
            (Timing::Metrical(tpq), _) if tpq.as_int() == 0 => Err(MidiError::ZeroTicksPerQuarter),
            (Timing::Metrical(tpq), Grid::Beats { frames_per_beat }) => Ok(Clock::Beats {
                frames_per_beat: frames_per_beat.into(),
                tpq: tpq.as_int().into(),
            }),
            (Timing::Metrical(tpq), Grid::Seconds { micros }) => Ok(Clock::TempoMap {
                tpq: tpq.as_int().into(),
                frame_micros: micros.into(),
            }),
            (Timing::Timecode(fps, _), Grid::Beats { .. }) => {
                Err(MidiError::SmpteWithBeatGrid { fps: fps.as_int() })
            }
            (Timing::Timecode(_, 0), Grid::Seconds { .. }) => {
                Err(MidiError::ZeroTicksPerSmpteFrame)
            }
            (Timing::Timecode(fps, subframes), Grid::Seconds { micros }) => {
                // 29.97 "drop-frame" is 30000/1001 frames per second.
                let (num, den) = match fps.as_int() {
                    29 => (30_000, 1_001),
                    n => (u128::from(n), 1),
                };
                Ok(Clock::Smpte {
                    per_tick: 1_000_000 * den,
                    frame: u128::from(micros) * num * u128::from(subframes),
                })
            }
        }
    }

    fn timeline(&self, tempos: &[(u64, u32)]) -> Result<Timeline, MidiError> {
        let (frame, segments) = match *self {
            Clock::Beats {
                frames_per_beat,
                tpq,
            } => (tpq, vec![Segment::start(frames_per_beat)]),
            Clock::Smpte { per_tick, frame } => (frame, vec![Segment::start(per_tick)]),
            Clock::TempoMap { tpq, frame_micros } => {
                let mut sorted = tempos.to_vec();
                sorted.sort_by_key(|&(tick, _)| tick); // stable: a later track wins a tie
                const DEFAULT_TEMPO: u128 = 500_000; // 120 bpm, the SMF default
                let mut segments = vec![Segment::start(DEFAULT_TEMPO)];
                for (tick, tempo) in sorted {
                    if tempo == 0 {
                        return Err(MidiError::ZeroTempo { tick });
                    }
                    let last = segments.last().expect("starts with one segment");
                    let scaled = last.scaled_at(tick);
                    if last.tick == tick {
                        segments.pop();
                    }
                    segments.push(Segment {
                        tick,
                        scaled,
                        per_tick: tempo.into(),
                    });
                }
                (frame_micros * tpq, segments)
            }
        };
        Ok(Timeline { frame, segments })
    }
}

/// From `tick` on, each tick adds `per_tick` scaled units.
struct Segment {
    tick: u64,
    scaled: u128,
    per_tick: u128,
}

impl Segment {
    fn start(per_tick: u128) -> Segment {
        Segment {
            tick: 0,
            scaled: 0,
            per_tick,
        }
    }

    fn scaled_at(&self, tick: u64) -> u128 {
        self.scaled + u128::from(tick - self.tick) * self.per_tick
    }
}

/// Piecewise-linear map from ticks to scaled time units, `frame` units per frame.
struct Timeline {
    frame: u128,
    segments: Vec<Segment>,
}

impl Timeline {
    /// `c(x) = ⌈x/L − ½⌉`, at least 0: the first frame whose centre is at or after tick.
    fn frame_at(&self, tick: u64) -> u128 {
        let index = self.segments.partition_point(|s| s.tick <= tick) - 1;
        let twice = 2 * self.segments[index].scaled_at(tick);
        if twice <= self.frame {
            0
        } else {
            (twice - self.frame).div_ceil(2 * self.frame)
        }
    }
}

/// What [`write_midi`] writes besides the notes.
#[derive(Clone, Debug, Default)]
pub struct MidiWriteOptions<'a> {
    /// Quarter notes per minute on a beat grid (default 120). A seconds grid fixes the tempo
    /// itself: one frame is written as one eighth note.
    pub tempo_bpm: Option<f64>,
    pub title: Option<&'a str>,
    /// Written as a key-signature event, so a reader that transposes to C keeps the roll as is.
    pub key: Option<Key>,
    /// Written as a time-signature event.
    pub meter: Option<Meter>,
}

const WRITE_VELOCITY: u8 = 80;
const WRITE_TICKS_PER_QUARTER: u16 = 480;

/// Seconds per frame of a roll on `grid` as written (MIDI) and played (audio): a beat grid at
/// `tempo_bpm` quarter notes per minute (default 120), a seconds grid at its own length.
pub fn frame_seconds(grid: Grid, tempo_bpm: Option<f64>) -> f64 {
    let (tpq, ticks_per_frame, micros_per_quarter) = write_timing(grid, tempo_bpm);
    f64::from(micros_per_quarter) * 1e-6 * f64::from(ticks_per_frame) / f64::from(tpq)
}

/// Quarter notes per minute of a roll on `grid` as written: `tempo_bpm` (default 120) on a beat
/// grid, rounded to whole µs a quarter as MIDI carries it; a seconds grid's own (an eighth a
/// frame).
pub fn written_tempo_bpm(grid: Grid, tempo_bpm: Option<f64>) -> f64 {
    let (_, _, micros_per_quarter) = write_timing(grid, tempo_bpm);
    60e6 / f64::from(micros_per_quarter)
}

/// Ticks per quarter, ticks per frame and µs per quarter for writing a roll on `grid`.
fn write_timing(grid: Grid, tempo_bpm: Option<f64>) -> (u16, u32, u32) {
    match grid {
        Grid::Beats { frames_per_beat } => {
            let fpb = frames_per_beat.clamp(1, Grid::MAX_FRAMES_PER_BEAT);
            let tpq = if u32::from(WRITE_TICKS_PER_QUARTER) % fpb == 0 {
                WRITE_TICKS_PER_QUARTER
            } else {
                (240 * fpb) as u16 // at most 15,360: fits the 15-bit header field
            };
            let bpm = tempo_bpm
                .filter(|b| b.is_finite() && *b > 0.0)
                .unwrap_or(120.0);
            let micros = (60e6 / bpm)
                .round()
                .clamp(1.0, f64::from(u24::max_value().as_int()));
            (tpq, u32::from(tpq) / fpb, micros as u32)
        }
        Grid::Seconds { micros } => {
            let per_quarter = (2 * micros).min(u64::from(u24::max_value().as_int()));
            (
                WRITE_TICKS_PER_QUARTER,
                u32::from(WRITE_TICKS_PER_QUARTER) / 2,
                per_quarter as u32,
            )
        }
    }
}

/// Write `roll` as a format-0 Standard MIDI File (piano, channel 1, velocity 80).
pub fn write_midi(roll: &PianoRoll, grid: Grid, options: &MidiWriteOptions) -> Vec<u8> {
    let (tpq, ticks_per_frame, micros_per_quarter) = write_timing(grid, options.tempo_bpm);
    let mut timed: Vec<(u64, u8, TrackEventKind<'_>)> = Vec::new();
    let meta = |m| TrackEventKind::Meta(m);
    timed.push((0, 0, meta(MetaMessage::Tempo(u24::new(micros_per_quarter)))));
    if let Some(title) = options.title {
        timed.push((0, 0, meta(MetaMessage::TrackName(title.as_bytes()))));
    }
    if let Some(key) = options.key {
        let minor = key.mode == crate::key::Mode::Minor;
        timed.push((
            0,
            0,
            meta(MetaMessage::KeySignature(key.signature_sharps(), minor)),
        ));
    }
    if let Some(meter) = options.meter {
        let (numerator, power, clocks, thirty_seconds) = meter.midi();
        timed.push((
            0,
            0,
            meta(MetaMessage::TimeSignature(
                numerator,
                power,
                clocks,
                thirty_seconds,
            )),
        ));
    }
    let channel = u4::new(0);
    timed.push((
        0,
        0,
        TrackEventKind::Midi {
            channel,
            message: MidiMessage::ProgramChange {
                program: u7::new(0),
            },
        },
    ));
    for (key, first, count) in roll.note_runs() {
        let pitch = u7::new(crate::roll::LOWEST_PITCH + key as u8);
        let start = first as u64 * u64::from(ticks_per_frame);
        let end = (first + count) as u64 * u64::from(ticks_per_frame);
        // At equal ticks note-offs (order 1) go before note-ons (order 2).
        timed.push((
            start,
            2,
            TrackEventKind::Midi {
                channel,
                message: MidiMessage::NoteOn {
                    key: pitch,
                    vel: u7::new(WRITE_VELOCITY),
                },
            },
        ));
        timed.push((
            end,
            1,
            TrackEventKind::Midi {
                channel,
                message: MidiMessage::NoteOff {
                    key: pitch,
                    vel: u7::new(0),
                },
            },
        ));
    }
    timed.sort_by_key(|&(tick, order, _)| (tick, order));
    let end_tick = (roll.len() as u64 * u64::from(ticks_per_frame))
        .max(timed.last().map_or(0, |&(tick, _, _)| tick));
    timed.push((end_tick, 3, meta(MetaMessage::EndOfTrack)));

    let mut track = Vec::with_capacity(timed.len());
    let mut last_tick = 0;
    for (tick, _, kind) in timed {
        let mut delta = tick - last_tick;
        // Deltas are 28-bit; a longer gap is split with empty text events.
        while delta > u64::from(u28::max_value().as_int()) {
            track.push(TrackEvent {
                delta: u28::max_value(),
                kind: meta(MetaMessage::Text(b"")),
            });
            delta -= u64::from(u28::max_value().as_int());
        }
        track.push(TrackEvent {
            delta: u28::new(delta as u32),
            kind,
        });
        last_tick = tick;
    }
    let smf = Smf {
        header: Header::new(Format::SingleTrack, Timing::Metrical(u15::new(tpq))),
        tracks: vec![track],
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes)
        .expect("writing MIDI to memory cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(frame: u128) -> Timeline {
        Timeline {
            frame,
            segments: vec![Segment::start(1)],
        }
    }

    #[test]
    fn frame_centre_rule() {
        let t = timeline(240);
        // A note of 239 ticks from 0 covers the centre of frame 0 only.
        assert_eq!((t.frame_at(0), t.frame_at(239)), (0, 1));
        // Exactly on the frame boundaries.
        assert_eq!((t.frame_at(240), t.frame_at(480)), (1, 2));
        // Shorter than half a frame: vanishes.
        assert_eq!(t.frame_at(0), t.frame_at(119));
        // Starts after the centre of frame 0: begins at frame 1.
        assert_eq!(t.frame_at(121), 1);
        assert_eq!(t.frame_at(120), 0);
    }

    #[test]
    fn tempo_changes_move_the_seconds_grid() {
        // tpq 480; 0.25 s frames; 120 bpm then 60 bpm from tick 960 (1 s).
        let clock = Clock::new(
            Timing::Metrical(u15::new(480)),
            Grid::Seconds { micros: 250_000 },
        )
        .unwrap();
        let t = clock.timeline(&[(960, 1_000_000)]).unwrap();
        assert_eq!(t.frame_at(960), 4); // 1.0 s
        assert_eq!(t.frame_at(960 + 480), 8); // + one quarter at 60 bpm = 2.0 s
    }
}
