//! roll → PNG: a piano-roll picture, pitch upwards against time to the right, like the key-press
//! graphs of the original project; and the small RGB [`Canvas`] it is drawn on, which the
//! trainer's learning-curve charts use too.
//!
//! The picture shows the whole octaves (C to B) that the roll uses, with each C named on the
//! left (C4 = middle C), a keyboard strip, black-key rows shaded, a line under every C, a bar
//! line where each bar of the piece's meter starts ([`crate::meter::Meter::bars`]), and an
//! orange line where the primer ends, if there is one.

use font8x8::UnicodeFonts;

use crate::grid::Grid;
use crate::meter::{Bars, Meter};
use crate::roll::{HIGHEST_PITCH, LOWEST_PITCH, PianoRoll};

/// An RGB picture being drawn: clipped pixels, 8×8 bitmap text (no font files), PNG out.
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: [u8; 3]) -> Canvas {
        Canvas {
            width,
            height,
            pixels: background.repeat(width * height),
        }
    }

    /// Colour one pixel; outside the picture nothing happens.
    pub fn put(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if (0..self.width as i64).contains(&x) && (0..self.height as i64).contains(&y) {
            let at = (y as usize * self.width + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// `text` with its top-left corner at (x, y), 8 pixels a character.
    pub fn text(&mut self, x: i64, y: i64, text: &str, colour: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS.get(c).unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.put(x + i as i64 * 8 + col, y + row as i64, colour);
                    }
                }
            }
        }
    }

    /// The picture as a PNG file.
    pub fn to_png(&self) -> Vec<u8> {
        let mut png_bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut png_bytes, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("PNG header to memory");
        writer
            .write_image_data(&self.pixels)
            .expect("PNG data of the declared size to memory");
        writer.finish().expect("PNG to memory");
        png_bytes
    }
}

/// Layout of [`render_png`].
#[derive(Clone, Copy, Debug)]
pub struct PngOptions {
    /// Pixels per frame horizontally (shrunk for long rolls so the width stays under `max_width`).
    pub frame_px: u32,
    /// Pixels per key vertically.
    pub key_px: u32,
    pub max_width: u32,
    /// Where bar lines go (`None`: no bar lines). Default: 4/4 on eighth-note frames, a line
    /// every 8 frames.
    pub bars: Option<Bars>,
    /// Frames of primer at the start: an orange line marks where the generated music begins
    /// (0 = no primer, no line).
    pub primer_frames: usize,
}

impl Default for PngOptions {
    fn default() -> Self {
        PngOptions {
            frame_px: 4,
            key_px: 5,
            max_width: 8_000,
            bars: Some(Meter::COMMON.bars(Grid::Beats { frames_per_beat: 2 })),
            primer_frames: 0,
        }
    }
}

/// The margin on the left where the Cs are named.
const LABEL_PX: u32 = 26;
const KEYBOARD_PX: u32 = 24;
const BACKGROUND: [u8; 3] = [250, 250, 250];
const BLACK_KEY_ROW: [u8; 3] = [232, 232, 236];
/// Bar lines, one pixel wide at the start of a bar's first frame.
pub const BAR_LINE: [u8; 3] = [200, 200, 208];
const OCTAVE_LINE: [u8; 3] = [170, 170, 180];
const NOTE: [u8; 3] = [31, 78, 160];
const WHITE_KEY: [u8; 3] = [255, 255, 255];
const BLACK_KEY: [u8; 3] = [30, 30, 30];
const LABEL: [u8; 3] = [60, 60, 70];
/// Where the primer ends.
pub const PRIMER_MARK: [u8; 3] = [230, 81, 0];

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
    let left = LABEL_PX + KEYBOARD_PX;
    let frame_px = options
        .frame_px
        .max(1)
        .min((options.max_width.saturating_sub(left) / frames).max(1));
    let key_px = options.key_px.max(1);
    let width = left + frames * frame_px;
    let height = rows * key_px;

    let bar_starts: Vec<bool> = (0..u64::from(frames))
        .map(|t| options.bars.is_some_and(|bars| bars.starts_at(t)))
        .collect();
    let mut canvas = Canvas::new(width as usize, height as usize, WHITE_KEY);
    let mut put = |x: u32, y: u32, color: [u8; 3]| canvas.put(i64::from(x), i64::from(y), color);
    for row in 0..rows {
        let pitch = high - row as u8; // top row = highest pitch
        let key = usize::from(pitch - LOWEST_PITCH);
        for dy in 0..key_px {
            let y = row * key_px + dy;
            let bottom_of_c = pitch.is_multiple_of(12) && dy == key_px - 1;
            for x in 0..KEYBOARD_PX {
                let black = is_black(pitch) && x < KEYBOARD_PX * 2 / 3;
                put(
                    LABEL_PX + x,
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
                    } else if dx == 0 && bar_starts[t as usize] {
                        BAR_LINE
                    } else if is_black(pitch) {
                        BLACK_KEY_ROW
                    } else {
                        BACKGROUND
                    };
                    put(left + t * frame_px + dx, y, color);
                }
            }
        }
    }
    // The Cs by name (MIDI 60 = C4), the text's baseline on the C's row.
    for row in 0..rows {
        let pitch = high - row as u8;
        if pitch.is_multiple_of(12) {
            let name = format!("C{}", i32::from(pitch) / 12 - 1);
            let bottom = i64::from((row + 1) * key_px);
            canvas.text(2, bottom - 8, &name, LABEL);
        }
    }
    if options.primer_frames > 0 && options.primer_frames <= roll.len() {
        let x = i64::from(left) + (options.primer_frames as i64) * i64::from(frame_px);
        for y in 0..i64::from(height) {
            canvas.put(x - 1, y, PRIMER_MARK);
            canvas.put(x, y, PRIMER_MARK);
        }
    }
    canvas.to_png()
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
        assert_eq!(info.width, LABEL_PX + KEYBOARD_PX + 10 * 4);
        assert_eq!(info.height, 12 * 5); // one octave, C4..B4
    }

    fn pixels(bytes: &[u8]) -> (usize, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()))
            .read_info()
            .unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        (info.width as usize, buffer)
    }

    /// Bar lines follow the meter: 6/8 on eighths puts one every 6 frames.
    #[test]
    fn bar_lines_follow_the_meter() {
        let roll = PianoRoll::from_frames(vec![Frame::from_pitches([60]).unwrap(); 24]);
        let grid = Grid::Beats { frames_per_beat: 2 };
        let lines = |meter: Meter| -> Vec<usize> {
            let options = PngOptions {
                bars: Some(meter.bars(grid)),
                ..Default::default()
            };
            let (_, buffer) = pixels(&render_png(&roll, &options));
            // Along the top row (B4): no note there, no octave line.
            let left = (LABEL_PX + KEYBOARD_PX) as usize;
            (0..24)
                .filter(|t| {
                    let i = (left + t * 4) * 3;
                    buffer[i..i + 3] == BAR_LINE
                })
                .collect()
        };
        assert_eq!(lines(Meter::new(6, 8).unwrap()), [0, 6, 12, 18]);
        assert_eq!(lines(Meter::COMMON), [0, 8, 16]);
        assert_eq!(lines(Meter::new(3, 4).unwrap()), [0, 6, 12, 18]);
    }

    /// The primer's end is marked across the whole height, and only with a primer; C4 is named.
    #[test]
    fn the_primer_end_is_marked_and_the_cs_named() {
        let c = Frame::from_pitches([60, 64, 67]).unwrap();
        let roll = PianoRoll::from_frames(vec![c; 10]);
        let with = PngOptions {
            primer_frames: 4,
            ..Default::default()
        };
        let (width, marked) = pixels(&render_png(&roll, &with));
        let (_, plain) = pixels(&render_png(&roll, &PngOptions::default()));
        let x = (LABEL_PX + KEYBOARD_PX) as usize + 4 * 4;
        let at = |buffer: &[u8], x: usize, y: usize| -> [u8; 3] {
            let i = (y * width + x) * 3;
            [buffer[i], buffer[i + 1], buffer[i + 2]]
        };
        for y in 0..60 {
            assert_eq!(at(&marked, x, y), PRIMER_MARK, "row {y}");
            assert_ne!(at(&plain, x, y), PRIMER_MARK, "row {y}");
        }
        // Label pixels in the margin, level with the C4 row (the bottom one of this octave).
        let label_pixels = (52..60)
            .flat_map(|y| (0..LABEL_PX as usize).map(move |x| (x, y)))
            .filter(|&(x, y)| at(&plain, x, y) == LABEL)
            .count();
        assert!(label_pixels > 10, "C4 is written");
    }
}
