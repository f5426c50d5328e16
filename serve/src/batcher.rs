//! Continuous batching: every active generation of one model advances together, one ONNX
//! Runtime call per frame for the whole batch.
//!
//! Each model has one batcher thread that owns its [`Stepper`] (the session, and the recurrent
//! states of the generations it runs). Between steps it takes in new requests (they join at the
//! next frame) and drops cancelled ones (their client went away); finished ones leave after
//! their last frame. Rows are independent in the step graph (dropout
//! is gone and BatchNorm is folded into constants), and the graph itself samples each row's
//! next frame from that row's uniforms, which come from the request's own generator
//! ([`proto::sampling::Uniforms`]), so a request's music does not depend on what else runs. The
//! batcher knows nothing of output heads: it feeds uniforms and reads `next_frame`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use pianoroll::melody::Constraint;
use pianoroll::{Frame, KEY_COUNT, LOWEST_PITCH};
use proto::sampling::Uniforms;

use crate::metrics::BatchStats;
use crate::step::Stepper;

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
    /// The frames fed before sampling starts ([`proto::sampling::start_frames`]): the primer,
    /// one silent frame before it for a model trained with a silent start, or alone.
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
    /// Names the generation's row to the [`Stepper`], which keeps its recurrent state.
    id: u64,
    job: Job,
    uniforms: Uniforms,
    /// Frames fed to the model so far.
    fed: usize,
    generated: usize,
    last: Frame,
    pending: Vec<Frame>,
    started: Instant,
}

impl Active {
    fn new(id: u64, job: Job) -> Active {
        Active {
            id,
            uniforms: Uniforms::new(job.seed),
            fed: 0,
            generated: 0,
            last: Frame::SILENT,
            pending: Vec::new(),
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
    /// Start the thread that runs `stepper` for the model `name`.
    pub fn start(name: &str, stepper: Stepper) -> Batcher {
        let (jobs, receiver) = mpsc::channel();
        let stats = Arc::new(BatchStats::default());
        let recorder = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("batcher-{name}"))
            .spawn(move || run(stepper, receiver, &recorder))
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

fn run(mut stepper: Stepper, jobs: mpsc::Receiver<Job>, stats: &BatchStats) {
    let mut batch: Vec<Active> = Vec::new();
    let mut next_id = 0u64;
    let mut admit = |job: Job| {
        next_id += 1;
        Active::new(next_id, job)
    };
    loop {
        if batch.is_empty() {
            match jobs.recv() {
                Ok(job) => batch.push(admit(job)),
                Err(mpsc::RecvError) => return, // no more jobs will come
            }
        }
        while let Ok(job) = jobs.try_recv() {
            batch.push(admit(job));
        }
        // A closed channel means the client went away: its slot is freed with the job.
        batch.retain(|a| !a.job.events.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let result = step(&mut stepper, &mut batch, stats);
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

/// One frame for every generation in `batch`: one step of the model.
fn step(stepper: &mut Stepper, batch: &mut [Active], stats: &BatchStats) -> Result<(), String> {
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
    let temperatures: Vec<f32> = batch.iter().map(|a| a.job.temperature).collect();
    let ids: Vec<u64> = batch.iter().map(|a| a.id).collect();
    let next_frames = stepper.step(&ids, &frames, &uniform, &temperatures)?;
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
