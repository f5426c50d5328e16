//! Learning curves as PNG line charts: NLL per frame against epoch, one colour per run, valid
//! solid and train dashed. Text comes from an 8×8 bitmap font, so no font files are needed.

use pianoroll::render::Canvas;

/// One curve.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Index into the palette; curves of one run share it.
    pub colour: usize,
}

const WIDTH: usize = 1000;
const HEIGHT: usize = 540;
const LEFT: usize = 70;
const RIGHT: usize = 330; // legend column: a line and up to LABEL_CHARS characters
const LABEL_CHARS: usize = 36;
const TOP: usize = 36;
const BOTTOM: usize = 44;
const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

/// The trainer's drawing on the pipeline's canvas: 2-pixel lines, solid or dashed.
trait Lines {
    /// A 2-pixel line; `dashed` draws 8 pixels on, 6 off along the way.
    fn line(&mut self, from: (f64, f64), to: (f64, f64), colour: [u8; 3], dashed: bool);
}

impl Lines for Canvas {
    fn line(&mut self, from: (f64, f64), to: (f64, f64), colour: [u8; 3], dashed: bool) {
        let steps = ((to.0 - from.0).abs().max((to.1 - from.1).abs()).ceil() as i64).max(1);
        for s in 0..=steps {
            if dashed && s % 14 >= 8 {
                continue;
            }
            let t = s as f64 / steps as f64;
            let x = (from.0 + (to.0 - from.0) * t).round() as i64;
            let y = (from.1 + (to.1 - from.1) * t).round() as i64;
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                self.put(x + dx, y + dy, colour);
            }
        }
    }
}

/// A "nice" tick step (1, 2 or 5 × 10^k) for about `count` ticks over `span`.
fn tick_step(span: f64, count: f64) -> f64 {
    let raw = (span / count).max(1e-12);
    let magnitude = 10f64.powf(raw.log10().floor());
    let unit = raw / magnitude;
    magnitude
        * if unit < 1.5 {
            1.0
        } else if unit < 3.5 {
            2.0
        } else if unit < 7.5 {
            5.0
        } else {
            10.0
        }
}

/// Render the series as a PNG.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Vec<u8> {
    let mut canvas = Canvas::new(WIDTH, HEIGHT, [255, 255, 255]);
    let points = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let plot_w = (WIDTH - LEFT - RIGHT) as f64;
    let plot_h = (HEIGHT - TOP - BOTTOM) as f64;
    let px = |x: f64| LEFT as f64 + (x - x0) / (x1 - x0) * plot_w;
    let py = |y: f64| TOP as f64 + (y1 - y) / (y1 - y0) * plot_h;

    let grey = [225, 225, 225];
    let ink = [40, 40, 40];
    let step = tick_step(y1 - y0, 6.0);
    let mut tick = (y0 / step).ceil() * step;
    while tick <= y1 {
        let y = py(tick);
        canvas.line((LEFT as f64, y), ((WIDTH - RIGHT) as f64, y), grey, false);
        canvas.text(4, y as i64 - 4, &format!("{tick:>7.2}"), ink);
        tick += step;
    }
    let step = tick_step(x1 - x0, 8.0).max(1.0);
    let mut tick = (x0 / step).ceil() * step;
    while tick <= x1 {
        let x = px(tick);
        canvas.line((x, TOP as f64), (x, (HEIGHT - BOTTOM) as f64), grey, false);
        let label = format!("{tick}");
        canvas.text(
            x as i64 - 4 * label.len() as i64,
            (HEIGHT - BOTTOM) as i64 + 8,
            &label,
            ink,
        );
        tick += step;
    }
    let frame = [
        (LEFT, TOP),
        (WIDTH - RIGHT, TOP),
        (WIDTH - RIGHT, HEIGHT - BOTTOM),
        (LEFT, HEIGHT - BOTTOM),
    ];
    for i in 0..4 {
        let (a, b) = (frame[i], frame[(i + 1) % 4]);
        canvas.line(
            (a.0 as f64, a.1 as f64),
            (b.0 as f64, b.1 as f64),
            ink,
            false,
        );
    }
    canvas.text(LEFT as i64, 12, title, ink);
    canvas.text(
        ((WIDTH - RIGHT + LEFT) / 2) as i64 - 4 * x_label.len() as i64,
        HEIGHT as i64 - 16,
        x_label,
        ink,
    );
    canvas.text(4, TOP as i64 - 14, y_label, ink);

    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[s.colour % PALETTE.len()];
        let finite: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        for pair in finite.windows(2) {
            canvas.line(
                (px(pair[0].0), py(pair[0].1)),
                (px(pair[1].0), py(pair[1].1)),
                colour,
                s.dashed,
            );
        }
        for &(x, y) in &finite {
            for dx in -2..=2 {
                for dy in -2..=2 {
                    canvas.put(px(x) as i64 + dx, py(y) as i64 + dy, colour);
                }
            }
        }
        let legend_y = TOP as f64 + 8.0 + i as f64 * 16.0;
        let legend_x = (WIDTH - RIGHT + 12) as f64;
        canvas.line(
            (legend_x, legend_y + 3.0),
            (legend_x + 24.0, legend_y + 3.0),
            colour,
            s.dashed,
        );
        let label: String = s.label.chars().take(LABEL_CHARS).collect();
        canvas.text(legend_x as i64 + 30, legend_y as i64, &label, ink);
    }

    canvas.to_png()
}
