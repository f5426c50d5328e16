//! Continuous batching: every active generation of one model advances together, one ONNX
//! Runtime call per frame for the whole batch.
//!
//! Each model has one batcher thread that owns its session. Between steps it takes in new
//! requests (they join at the next frame) and drops cancelled ones (their client went away);
//! finished ones leave after their last frame. Rows are independent in the step graph (dropout
//! is gone and BatchNorm is folded into constants), and the graph itself samples each row's
//! next frame from that row's uniforms, which come from the request's own generator
//! ([`proto::sampling::Uniforms`]), so a request's music does not depend on what else runs. The
//! batcher knows nothing of output heads: it feeds uniforms and reads `next_frame`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use pianoroll::melody::Constraint;
use pianoroll::{Frame, KEY_COUNT, LOWEST_PITCH};
use proto::card::{ModelCard, SamplingTensors};
use proto::sampling::Uniforms;

use crate::metrics::BatchStats;

/// What a generation sends back to the request handler.
#[derive(Debug)]
pub enum Event {
    /// Generated frames `first ..` (0 = the first after the primer).
    Frames { first: usize, frames: Vec<Frame> },
    /// All requested frames were sent.
    Done { seconds: f64 },
    /// The model failed; the generation is over.
    Failed(String),
}

/// A held generation slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A limit on concurrent generations, shared by all models of a server.
#[derive(Clone, Debug)]
pub struct Slots {
    active: Arc<AtomicUsize>,
    limit: usize,
}

impl Slots {
    pub fn new(limit: usize) -> Slots {
        Slots {
            active: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// A slot, or `None` when all `limit` are taken.
    pub fn try_acquire(&self) -> Option<Slot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.active.clone()))
    }

    pub fn in_use(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

/// One generation request, validated.
#[derive(Debug)]
pub struct Job {
    /// The frames fed before sampling starts: the primer, or one silent frame.
    pub start: Vec<Frame>,
    /// Frames to sample after `start`.
    pub frames: usize,
    pub temperature: f32,
    pub seed: u64,
    /// Frames per [`Event::Frames`].
    pub chunk_frames: usize,
    /// The keys forced on and off in generated frame `i` (a melody harmonised); frames past
    /// the end are free.
    pub constraints: Vec<Constraint>,
    pub events: tokio::sync::mpsc::UnboundedSender<Event>,
    pub slot: Slot,
}

/// A generation in the batch.
struct Active {
    job: Job,
    uniforms: Uniforms,
    /// Frames fed to the model so far.
    fed: usize,
    generated: usize,
    last: Frame,
    pending: Vec<Frame>,
    /// One row per state tensor, in card order.
    state: Vec<Vec<f32>>,
    started: Instant,
}

impl Active {
    fn new(job: Job, card: &ModelCard) -> Active {
        Active {
            uniforms: Uniforms::new(job.seed),
            fed: 0,
            generated: 0,
            last: Frame::SILENT,
            pending: Vec::new(),
            state: initial_state(card, 1),
            started: Instant::now(),
            job,
        }
    }

    fn input(&self) -> Frame {
        self.job.start.get(self.fed).copied().unwrap_or(self.last)
    }

    /// Whether this step's output is a generated frame: the step that feeds the last primer
    /// frame (or the silent start) is the first to sample.
    fn samples_this_step(&self) -> bool {
        self.fed + 1 >= self.job.start.len()
    }

    /// Send what is pending; false when the client has gone.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let frames = std::mem::take(&mut self.pending);
        let first = self.generated - frames.len();
        self.job
            .events
            .send(Event::Frames { first, frames })
            .is_ok()
    }

    fn finished(&self) -> bool {
        self.generated == self.job.frames
    }
}

/// The handle to one model's batcher thread.
pub struct Batcher {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<BatchStats>,
}

impl Batcher {
    /// Start the thread that runs `session` for the model `name`.
    pub fn start(name: &str, session: Session, card: ModelCard) -> Batcher {
        let (jobs, receiver) = mpsc::channel();
        let stats = Arc::new(BatchStats::default());
        let recorder = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("batcher-{name}"))
            .spawn(move || run(session, card, receiver, &recorder))
            .expect("spawning a batcher thread");
        Batcher {
            jobs: Some(jobs),
            thread: Some(thread),
            stats,
        }
    }

    /// This batcher's statistics (shared, updated as it runs).
    pub fn stats(&self) -> Arc<BatchStats> {
        self.stats.clone()
    }

    /// Queue a job; it joins the batch at the next frame. Gives the job back when the batcher
    /// has stopped.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| Box::new(e.0)),
            None => Err(Box::new(job)),
        }
    }
}

impl Drop for Batcher {
    /// Stop taking jobs, let the running ones finish, and wait for the thread.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(mut session: Session, card: ModelCard, jobs: mpsc::Receiver<Job>, stats: &BatchStats) {
    // The registry serves only cards with sampling tensors.
    let sampling = card.sampling.clone().unwrap_or_default();
    let mut batch: Vec<Active> = Vec::new();
    loop {
        if batch.is_empty() {
            match jobs.recv() {
                Ok(job) => batch.push(Active::new(job, &card)),
                Err(mpsc::RecvError) => return, // no more jobs will come
            }
        }
        while let Ok(job) = jobs.try_recv() {
            batch.push(Active::new(job, &card));
        }
        // A closed channel means the client went away: its slot is freed with the job.
        batch.retain(|a| !a.job.events.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let result = step(&mut session, &card, &sampling, &mut batch, stats);
        stats.record(batch.len(), started.elapsed().as_secs_f64());
        if let Err(message) = result {
            tracing::error!("model step failed: {message}");
            for active in batch.drain(..) {
                let _ = active.job.events.send(Event::Failed(message.clone()));
            }
            continue;
        }
        batch.retain_mut(|active| {
            if !active.finished() {
                return true;
            }
            let seconds = active.started.elapsed().as_secs_f64();
            let _ = active.flush() && active.job.events.send(Event::Done { seconds }).is_ok();
            false
        });
    }
}

/// Each recurrent state's initial value for `rows` rows (width a row), as the card gives it.
pub fn initial_state(card: &ModelCard, rows: usize) -> Vec<Vec<f32>> {
    card.states
        .iter()
        .map(|s| vec![s.initial; rows * s.width])
        .collect()
}

/// The step graph's inputs for `rows` rows, each given row after row: frames and uniforms
/// (88 a row), one temperature a row, and each recurrent state (width a row). One home for the
/// batcher, the load-time invariance check ([`crate::invariance`]) and the serving bench.
pub fn step_inputs(
    card: &ModelCard,
    rows: usize,
    frames: Vec<f32>,
    uniform: Vec<f32>,
    temperature: Vec<f32>,
    states: Vec<Vec<f32>>,
) -> Result<Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'static>)>, String> {
    let sampling = card.sampling()?;
    let tensor =
        |shape: [usize; 2], values: Vec<f32>| -> Result<SessionInputValue<'static>, String> {
            Ok(Tensor::from_array((shape, values))
                .map_err(|e| e.to_string())?
                .into())
        };
    let mut inputs = vec![
        (
            std::borrow::Cow::from(card.frame_input.as_str()),
            tensor([rows, KEY_COUNT], frames)?,
        ),
        (
            sampling.uniform_input.as_str().into(),
            tensor([rows, KEY_COUNT], uniform)?,
        ),
        (
            sampling.temperature_input.as_str().into(),
            tensor([rows, 1], temperature)?,
        ),
    ];
    for (spec, values) in card.states.iter().zip(states) {
        inputs.push((
            spec.input.as_str().into(),
            tensor([rows, spec.width], values)?,
        ));
    }
    Ok(inputs)
}

/// One frame for every generation in `batch`: one session call.
fn step(
    session: &mut Session,
    card: &ModelCard,
    sampling: &SamplingTensors,
    batch: &mut [Active],
    stats: &BatchStats,
) -> Result<(), String> {
    let rows = batch.len();
    let mut frames = vec![0f32; rows * KEY_COUNT];
    // Rows still reading their primer draw nothing: their sampled frame is not used, and the
    // uniforms of a request then depend only on its seed, not on its primer's length.
    let mut uniform = vec![0f32; rows * KEY_COUNT];
    for (row, active) in batch.iter_mut().enumerate() {
        for key in active.input().keys() {
            frames[row * KEY_COUNT + key] = 1.0;
        }
        if active.samples_this_step() {
            let keys = &mut uniform[row * KEY_COUNT..(row + 1) * KEY_COUNT];
            active.uniforms.fill(keys);
            if let Some(&constraint) = active.job.constraints.get(active.generated) {
                proto::sampling::constrain(keys, constraint);
            }
        }
    }
    let temperature: Vec<f32> = batch.iter().map(|a| a.job.temperature).collect();
    let states: Vec<Vec<f32>> = (0..card.states.len())
        .map(|index| {
            batch
                .iter()
                .flat_map(|a| a.state[index].iter().copied())
                .collect()
        })
        .collect();
    let inputs = step_inputs(card, rows, frames, uniform, temperature, states)?;
    let outputs = session.run(inputs).map_err(|e| e.to_string())?;
    let read = |name: &str, width: usize| -> Result<&[f32], String> {
        let (_, values) = outputs
            .get(name)
            .ok_or_else(|| format!("the model has no output {name}"))?
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        if values.len() != rows * width {
            return Err(format!(
                "output {name} has {} values, expected {}",
                values.len(),
                rows * width
            ));
        }
        Ok(values)
    };
    for (index, spec) in card.states.iter().enumerate() {
        let values = read(&spec.output, spec.width)?;
        for (row, active) in batch.iter_mut().enumerate() {
            active.state[index].copy_from_slice(&values[row * spec.width..(row + 1) * spec.width]);
        }
    }
    let next_frames = read(&sampling.next_frame_output, KEY_COUNT)?;
    for (row, active) in batch.iter_mut().enumerate() {
        let sampled = active.samples_this_step();
        active.fed += 1;
        if !sampled {
            continue; // still reading the primer
        }
        let keys = &next_frames[row * KEY_COUNT..(row + 1) * KEY_COUNT];
        let mut frame = Frame::SILENT;
        keys.iter()
            .enumerate()
            .filter(|(_, on)| **on > 0.5)
            .for_each(|(key, _)| frame.insert(key));
        active.last = frame;
        active.pending.push(frame);
        active.generated += 1;
        stats.add_generated_frame();
        if active.pending.len() >= active.job.chunk_frames && !active.finished() {
            // A failed send means the client went away; the next round drops the job.
            active.flush();
        }
    }
    Ok(())
}

/// The MIDI pitches of a frame, for the wire.
pub fn pitches(frame: Frame) -> Vec<u32> {
    frame.pitches().map(u32::from).collect()
}

/// A frame from MIDI pitches; `None` if one is off the keyboard.
pub fn frame_of(pitches: &[u32]) -> Option<Frame> {
    let in_range =
        |p: u32| (u32::from(LOWEST_PITCH)..u32::from(LOWEST_PITCH) + KEY_COUNT as u32).contains(&p);
    if !pitches.iter().all(|&p| in_range(p)) {
        return None;
    }
    Frame::from_pitches(pitches.iter().map(|&p| p as u8))
}
