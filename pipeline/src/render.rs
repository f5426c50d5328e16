//! roll → PNG: a piano-roll picture, pitch upwards against time to the right, like the key-press
//! graphs of the original project.
//!
//! The picture shows the whole octaves (C to B) that the roll uses, with a keyboard strip on the
//! left, black-key rows shaded, a line under every C, and a faint line every `beat_frames`.

use crate::roll::{HIGHEST_PITCH, LOWEST_PITCH, PianoRoll};

/// Layout of [`render_png`].
#[derive(Clone, Copy, Debug)]
pub struct PngOptions {
    /// Pixels per frame horizontally (shrunk for long rolls so the width stays under `max_width`).
    pub frame_px: u32,
    /// Pixels per key vertically.
    pub key_px: u32,
    pub max_width: u32,
    /// Draw a faint vertical line every this many frames (0 = none); 8 = a 4/4 bar of eighths.
    pub grid_frames: u32,
}

impl Default for PngOptions {
    fn default() -> Self {
        PngOptions {
            frame_px: 4,
            key_px: 5,
            max_width: 8_000,
            grid_frames: 8,
        }
    }
}

const KEYBOARD_PX: u32 = 24;
const BACKGROUND: [u8; 3] = [250, 250, 250];
const BLACK_KEY_ROW: [u8; 3] = [232, 232, 236];
const GRID_LINE: [u8; 3] = [210, 210, 215];
const OCTAVE_LINE: [u8; 3] = [170, 170, 180];
const NOTE: [u8; 3] = [31, 78, 160];
const WHITE_KEY: [u8; 3] = [255, 255, 255];
const BLACK_KEY: [u8; 3] = [30, 30, 30];

fn is_black(pitch: u8) -> bool {
    matches!(pitch % 12, 1 | 3 | 6 | 8 | 10)
}

/// Render `roll` as an RGB PNG.
pub fn render_png(roll: &PianoRoll, options: &PngOptions) -> Vec<u8> {
    let used = roll
        .frames()
        .iter()
        .fold(0u128, |acc, frame| acc | frame.bits());
    // Whole octaves around the used pitches; middle C's octave for a silent roll.
    let (low, high) = if used == 0 {
        (60, 71)
    } else {
        let lowest = LOWEST_PITCH + used.trailing_zeros() as u8;
        let highest = LOWEST_PITCH + (127 - used.leading_zeros()) as u8;
        (
            (lowest - lowest % 12).max(LOWEST_PITCH),
            (highest - highest % 12 + 11).min(HIGHEST_PITCH),
        )
    };
    let rows = u32::from(high - low) + 1;
    let frames = roll.len().max(1) as u32;
    let frame_px = options
        .frame_px
        .max(1)
        .min((options.max_width.saturating_sub(KEYBOARD_PX) / frames).max(1));
    let key_px = options.key_px.max(1);
    let width = KEYBOARD_PX + frames * frame_px;
    let height = rows * key_px;

    let mut pixels = vec![0u8; (width * height * 3) as usize];
    let mut put = |x: u32, y: u32, color: [u8; 3]| {
        let at = ((y * width + x) * 3) as usize;
        pixels[at..at + 3].copy_from_slice(&color);
    };
    for row in 0..rows {
        let pitch = high - row as u8; // top row = highest pitch
        let key = usize::from(pitch - LOWEST_PITCH);
        for dy in 0..key_px {
            let y = row * key_px + dy;
            let bottom_of_c = pitch.is_multiple_of(12) && dy == key_px - 1;
            for x in 0..KEYBOARD_PX {
                let black = is_black(pitch) && x < KEYBOARD_PX * 2 / 3;
                put(
                    x,
                    y,
                    if black {
                        BLACK_KEY
                    } else if bottom_of_c {
                        OCTAVE_LINE
                    } else {
                        WHITE_KEY
                    },
                );
            }
            for t in 0..frames {
                let on = roll
                    .frames()
                    .get(t as usize)
                    .is_some_and(|f| f.contains(key));
                for dx in 0..frame_px {
                    // Runs are drawn unbroken; a one-pixel gap keeps neighbouring keys apart.
                    let color = if on && dy + 1 < key_px.max(2) {
                        NOTE
                    } else if bottom_of_c {
                        OCTAVE_LINE
                    } else if options.grid_frames > 0 && t % options.grid_frames == 0 && dx == 0 {
                        GRID_LINE
                    } else if is_black(pitch) {
                        BLACK_KEY_ROW
                    } else {
                        BACKGROUND
                    };
                    put(KEYBOARD_PX + t * frame_px + dx, y, color);
                }
            }
        }
    }

    let mut png_bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut png_bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("PNG header to memory");
    writer
        .write_image_data(&pixels)
        .expect("PNG data of the declared size to memory");
    writer.finish().expect("PNG to memory");
    png_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roll::Frame;

    #[test]
    fn png_has_the_expected_size() {
        let c = Frame::from_pitches([60, 64, 67]).unwrap();
        let roll = PianoRoll::from_frames(vec![c; 10]);
        let bytes = render_png(&roll, &PngOptions::default());
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!(info.width, KEYBOARD_PX + 10 * 4);
        assert_eq!(info.height, 12 * 5); // one octave, C4..B4
    }
}
