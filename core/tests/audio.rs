//! Roll → WAV: the file lasts the roll, sounds where keys are down and is silent where none
//! are, with the built-in synthesiser and with a General MIDI SoundFont, and the same roll gives
//! the same bytes.

use pianoroll::audio::{SAMPLE_RATE, Synth, render_wav, wav_len};
use pianoroll::{Frame, Grid, PianoRoll};

/// 16 eighth-note frames (4 s at 120 bpm): a C major chord, silence, A4, silence; 4 frames each.
fn known_roll() -> PianoRoll {
    let chord = Frame::from_pitches([60, 64, 67]).unwrap();
    let a4 = Frame::from_pitches([69]).unwrap();
    let mut frames = vec![chord; 4];
    frames.extend([Frame::SILENT; 4]);
    frames.extend([a4; 4]);
    frames.extend([Frame::SILENT; 4]);
    PianoRoll::from_frames(frames)
}

const GRID: Grid = Grid::Beats { frames_per_beat: 2 };

/// The header fields a reader relies on, and the samples (interleaved stereo).
fn parse(wav: &[u8]) -> Vec<i16> {
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    let u16_at = |at: usize| u16::from_le_bytes([wav[at], wav[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(wav[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(4) as usize, wav.len() - 8);
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), 2, "stereo");
    assert_eq!(u32_at(24), SAMPLE_RATE);
    assert_eq!(u16_at(34), 16, "16-bit");
    assert_eq!(&wav[36..40], b"data");
    assert_eq!(u32_at(40) as usize, wav.len() - 44);
    wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// RMS of each frame (0.25 s), both channels, on a 0..1 scale.
fn rms_per_frame(samples: &[i16], frames: usize) -> Vec<f64> {
    let per_frame = samples.len() / frames;
    samples
        .chunks(per_frame)
        .map(|chunk| {
            let sum: f64 = chunk
                .iter()
                .map(|&s| (f64::from(s) / 32_768.0).powi(2))
                .sum();
            (sum / chunk.len() as f64).sqrt()
        })
        .collect()
}

fn check(synth: &Synth) {
    let roll = known_roll();
    let wav = render_wav(&roll, GRID, None, synth);
    let samples = parse(&wav);
    // Exactly 16 frames of 0.25 s.
    assert_eq!(samples.len(), 16 * (SAMPLE_RATE as usize / 4) * 2);
    let rms = rms_per_frame(&samples, 16);
    let sounding = [0, 1, 2, 3, 8, 9, 10, 11].map(|f| rms[f]);
    let quietest = sounding.iter().copied().fold(f64::INFINITY, f64::min);
    // A piano note decays while held, so the last frame of a note is the quietest.
    assert!(quietest > 0.001, "{synth:?}: keys down but RMS {rms:?}");
    // The last two frames of each silent stretch: a release may ring into the first ones.
    for f in [6, 7, 14, 15] {
        assert!(
            rms[f] < quietest / 10.0,
            "{synth:?}: frame {f} should be silent, RMS {rms:?}"
        );
    }
    assert_eq!(
        wav,
        render_wav(&roll, GRID, None, synth),
        "the same bytes again"
    );
    // Another tempo stretches the same music.
    let slow_wav = render_wav(&roll, GRID, Some(60.0), synth);
    let slow = parse(&slow_wav);
    assert_eq!(slow.len(), 2 * samples.len());
    // What servers check before rendering is the size they then get.
    assert_eq!(wav_len(roll.len(), GRID, None), wav.len() as u64);
    assert_eq!(wav_len(roll.len(), GRID, Some(60.0)), slow_wav.len() as u64);
}

#[test]
fn built_in_synthesiser_plays_the_roll() {
    check(&Synth::BuiltIn);
}

#[test]
fn soundfont_plays_the_roll() {
    match pianoroll_tests::soundfont() {
        Some(path) => check(&Synth::load(Some(&path)).unwrap()),
        None => eprintln!("skipped: no General MIDI SoundFont on this machine"),
    }
}

#[test]
fn a_bad_soundfont_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.sf2");
    std::fs::write(&fake, b"RIFF\x04\x00\x00\x00sfbk").unwrap();
    let error = Synth::load(Some(&fake)).unwrap_err().to_string();
    assert!(
        error.contains("fake.sf2") && error.contains("not a SoundFont"),
        "{error}"
    );
    let error = Synth::load(Some(&dir.path().join("missing.sf2"))).unwrap_err();
    assert!(error.to_string().contains("missing.sf2"), "{error}");
}
