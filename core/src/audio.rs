//! Roll → audio: a WAV file (44.1 kHz, 16-bit, stereo) of a piano roll, played by a General
//! MIDI SoundFont through rustysynth (a pure-Rust SoundFont synthesiser), or, where no SoundFont
//! is found, by a small built-in synthesiser (a few decaying sine partials per note) so there is
//! always sound.
//!
//! A note is each run of frames a key is down (as the MIDI writer plays it), on at the start of
//! its first frame and off at the end of its last, velocity 80, General MIDI program 0 (acoustic
//! grand piano). The file lasts exactly the roll: frames × frame length, the frame length as the
//! MIDI writer times it (a beat grid at `tempo_bpm`, default 120). A note still ringing at the
//! end is cut there. The same roll, grid, tempo and synthesiser give the same bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::grid::Grid;
use crate::roll::{LOWEST_PITCH, PianoRoll};

pub const SAMPLE_RATE: u32 = 44_100;
const VELOCITY: i32 = 80;

/// Where a SoundFont is looked for when none is named: Debian's General MIDI SoundFonts
/// (`timgm6mb-soundfont`, which the README's setup installs, and `fluid-soundfont-gm`).
pub const DEFAULT_SOUNDFONTS: [&str; 3] = [
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
];

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("--soundfont {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("--soundfont {path}: not a SoundFont: {error}")]
    SoundFont { path: String, error: String },
}

/// What plays the notes.
#[derive(Clone)]
pub enum Synth {
    SoundFont {
        font: Arc<rustysynth::SoundFont>,
        path: PathBuf,
    },
    /// Decaying sine partials: no SoundFont needed.
    BuiltIn,
}

impl std::fmt::Debug for Synth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Synth {
    /// The SoundFont at `path`, or when `None` the first of [`DEFAULT_SOUNDFONTS`] that exists,
    /// or else the built-in synthesiser. A named file that cannot be read is an error.
    pub fn load(path: Option<&Path>) -> Result<Synth, AudioError> {
        let path = match path {
            Some(path) => path.to_owned(),
            None => match DEFAULT_SOUNDFONTS
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
            {
                Some(found) => found.to_owned(),
                None => return Ok(Synth::BuiltIn),
            },
        };
        let shown = path.display().to_string();
        let mut file = std::fs::File::open(&path).map_err(|error| AudioError::Read {
            path: shown.clone(),
            error,
        })?;
        let font =
            rustysynth::SoundFont::new(&mut file).map_err(|error| AudioError::SoundFont {
                path: shown,
                error: format!("{error:?}"),
            })?;
        Ok(Synth::SoundFont {
            font: Arc::new(font),
            path,
        })
    }

    /// For logs and messages: which synthesiser this is.
    pub fn describe(&self) -> String {
        match self {
            Synth::SoundFont { path, .. } => format!("SoundFont {}", path.display()),
            Synth::BuiltIn => {
                "the built-in synthesiser (no SoundFont found; install timgm6mb-soundfont or \
                 pass --soundfont FILE for a piano)"
                    .to_owned()
            }
        }
    }
}

/// Samples per frame of `grid`, a frame lasting what the MIDI writer gives it
/// ([`crate::midi::frame_seconds`]).
fn samples_per_frame(grid: Grid, tempo_bpm: Option<f64>) -> f64 {
    crate::midi::frame_seconds(grid, tempo_bpm) * f64::from(SAMPLE_RATE)
}

/// A note as samples: key, first sample, one past the last.
struct SampleNote {
    pitch: u8,
    start: usize,
    end: usize,
}

fn sample_notes(roll: &PianoRoll, per_frame: f64) -> Vec<SampleNote> {
    let at = |frame: usize| (frame as f64 * per_frame).round() as usize;
    roll.note_runs()
        .into_iter()
        .map(|(key, first, count)| SampleNote {
            pitch: LOWEST_PITCH + key as u8,
            start: at(first),
            end: at(first + count),
        })
        .collect()
}

/// The roll as 16-bit stereo PCM samples (interleaved left, right).
pub fn render_samples(
    roll: &PianoRoll,
    grid: Grid,
    tempo_bpm: Option<f64>,
    synth: &Synth,
) -> Vec<i16> {
    let per_frame = samples_per_frame(grid, tempo_bpm);
    let total = (roll.len() as f64 * per_frame).round() as usize;
    let notes = sample_notes(roll, per_frame);
    let (left, right) = match synth {
        Synth::SoundFont { font, .. } => render_soundfont(font, &notes, total),
        Synth::BuiltIn => {
            let mono = render_built_in(&notes, total);
            (mono.clone(), mono)
        }
    };
    let to_i16 = |x: f32| (x.clamp(-1.0, 1.0) * 32_767.0).round() as i16;
    left.iter()
        .zip(&right)
        .flat_map(|(&l, &r)| [to_i16(l), to_i16(r)])
        .collect()
}

fn render_soundfont(
    font: &Arc<rustysynth::SoundFont>,
    notes: &[SampleNote],
    total: usize,
) -> (Vec<f32>, Vec<f32>) {
    let settings = rustysynth::SynthesizerSettings::new(SAMPLE_RATE as i32);
    let mut synthesizer =
        rustysynth::Synthesizer::new(font, &settings).expect("44.1 kHz is a valid setting");
    // Twice rustysynth's default of 0.5: a few piano notes at velocity 80 then peak around a
    // fifth of full scale, with room for the six-note chords of this music.
    synthesizer.set_master_volume(1.0);
    // Note-offs before note-ons at the same sample, so a key struck again restarts cleanly.
    let mut events: Vec<(usize, bool, u8)> = notes
        .iter()
        .flat_map(|n| [(n.start, true, n.pitch), (n.end, false, n.pitch)])
        .collect();
    events.sort_by_key(|&(at, on, pitch)| (at, on, pitch));
    let (mut left, mut right) = (vec![0f32; total], vec![0f32; total]);
    let mut done = 0;
    for (at, on, pitch) in events {
        let at = at.min(total);
        if at > done {
            synthesizer.render(&mut left[done..at], &mut right[done..at]);
            done = at;
        }
        if on {
            synthesizer.note_on(0, i32::from(pitch), VELOCITY);
        } else {
            synthesizer.note_off(0, i32::from(pitch));
        }
    }
    if total > done {
        synthesizer.render(&mut left[done..], &mut right[done..]);
    }
    (left, right)
}

/// Each note as three sine partials under a short attack, an exponential decay and a 30 ms
/// release after its end.
fn render_built_in(notes: &[SampleNote], total: usize) -> Vec<f32> {
    let rate = f64::from(SAMPLE_RATE);
    let attack = (0.005 * rate) as usize;
    let release = (0.03 * rate) as usize;
    let mut out = vec![0f32; total];
    for note in notes {
        let frequency = 440.0 * 2f64.powf((f64::from(note.pitch) - 69.0) / 12.0);
        let end = (note.end + release).min(total);
        for (i, sample) in out[note.start.min(total)..end].iter_mut().enumerate() {
            let t = i as f64 / rate;
            let mut envelope = (-2.5 * t).exp() * (i as f64 / attack as f64).min(1.0);
            let held = note.end - note.start;
            if i >= held {
                envelope *= 1.0 - (i - held) as f64 / release as f64;
            }
            let phase = std::f64::consts::TAU * frequency * t;
            let tone = phase.sin() + 0.4 * (2.0 * phase).sin() + 0.2 * (3.0 * phase).sin();
            *sample += (0.12 * envelope * tone) as f32;
        }
    }
    out
}

/// The size in bytes of [`render_wav`]'s file for a roll of `frames` frames: what a server
/// checks before it renders (a WAV holds 176,400 bytes a second).
pub fn wav_len(frames: usize, grid: Grid, tempo_bpm: Option<f64>) -> u64 {
    let samples = (frames as f64 * samples_per_frame(grid, tempo_bpm)).round();
    44 + 4 * samples as u64
}

/// The roll as a WAV file: RIFF/WAVE, PCM, 44.1 kHz, 16-bit, stereo.
pub fn render_wav(roll: &PianoRoll, grid: Grid, tempo_bpm: Option<f64>, synth: &Synth) -> Vec<u8> {
    let samples = render_samples(roll, grid, tempo_bpm, synth);
    wav_bytes(&samples, 2)
}

/// 16-bit PCM `samples` (interleaved over `channels`) as a WAV file.
pub fn wav_bytes(samples: &[i16], channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let block_align = channels * 2;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend(b"RIFF");
    out.extend((36 + data_len).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes()); // the fmt chunk's size
    out.extend(1u16.to_le_bytes()); // PCM
    out.extend(channels.to_le_bytes());
    out.extend(SAMPLE_RATE.to_le_bytes());
    out.extend((SAMPLE_RATE * u32::from(block_align)).to_le_bytes());
    out.extend(block_align.to_le_bytes());
    out.extend(16u16.to_le_bytes()); // bits per sample
    out.extend(b"data");
    out.extend(data_len.to_le_bytes());
    for sample in samples {
        out.extend(sample.to_le_bytes());
    }
    out
}
