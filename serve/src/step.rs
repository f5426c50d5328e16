//! One frame of a batch through a model's step graph: the batcher's only contact with ONNX
//! Runtime. Two ways, chosen by `serve --step`:
//!
//! - **direct** (the CPU's default): each frame, the batch's rows become fresh input tensors,
//!   and the recurrent states come back to the host with the sampled frames. On the CPU the
//!   host is the device, so nothing is gained by keeping anything in place.
//! - **bucketed** (CUDA's default): a batch is padded to a fixed shape (the next power of two
//!   of rows, or one shape for every batch with `--batch-rows`), and every input and output is
//!   bound to a buffer on the model's device that stays put (ONNX Runtime's I/O binding). The
//!   recurrent states stay on the device from frame to frame, ping-ponging between two buffers;
//!   only the frames and uniforms go up and the sampled frames come down. States pass through
//!   the host only when the batch's rows change (a generation joins or leaves). Fixed shapes and
//!   fixed addresses are what ONNX Runtime's CUDA graphs need: each shape's step is captured
//!   once and then replayed as one launch, instead of the hundreds of small kernels a NADE step
//!   launches one by one (issue 23 measured 4–9 ms a frame on an H200 that way).
//!
//! Both ways give the same frames bit for bit on the CPU (`serve/tests/step.rs`). Rows are
//! independent in the graph, so padding rows change nothing in the real ones; what a shape can
//! change on CUDA is the kernels chosen, which is why one fixed shape (`--batch-rows`) makes a
//! request's music independent of what else runs, at the cost of computing the padding.

use std::collections::BTreeMap;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, NoSelectedOutputs, RunOptions, Session, SessionInputValue};
use ort::value::Tensor;
use pianoroll::KEY_COUNT;
use proto::card::{ModelCard, SamplingTensors, StateTensor};

use crate::runtime::Provider;

/// How a batch goes through the step graph (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StepMode {
    /// Bucketed on CUDA, direct on the CPU.
    Auto,
    /// Fresh tensors every frame; states through the host.
    Direct,
    /// Fixed shapes, buffers bound in place, states kept on the device (CUDA graphs on CUDA).
    Bucketed,
}

/// The step settings of a server (`serve --step`, `--batch-rows`, `--cuda-graphs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepOptions {
    pub mode: StepMode,
    /// Bucketed: pad every batch to this many rows (a batch never exceeds it: the server's
    /// `--max-concurrent` caps it), instead of to the next power of two.
    pub batch_rows: Option<usize>,
    /// Bucketed on CUDA: capture each shape's step as a CUDA graph and replay it.
    pub cuda_graphs: bool,
}

impl Default for StepOptions {
    fn default() -> StepOptions {
        StepOptions {
            mode: StepMode::Auto,
            batch_rows: None,
            cuda_graphs: true,
        }
    }
}

impl StepOptions {
    /// The way a model on `provider` steps: `Auto` resolved.
    pub fn mode_on(&self, provider: Provider) -> StepMode {
        match (self.mode, provider) {
            (StepMode::Auto, Provider::Cuda) => StepMode::Bucketed,
            (StepMode::Auto, Provider::Cpu) => StepMode::Direct,
            (mode, _) => mode,
        }
    }

    /// Whether a session on `provider` should be built for CUDA graphs.
    pub fn wants_cuda_graphs(&self, provider: Provider) -> bool {
        provider == Provider::Cuda
            && self.cuda_graphs
            && self.mode_on(provider) == StepMode::Bucketed
    }
}

/// A model's session and the states of the generations it runs. Rows are named by ids that
/// stay the same for a generation's life: an id not seen before starts from the card's initial
/// state, and an id that is no longer given is forgotten.
pub struct Stepper {
    session: Session,
    card: ModelCard,
    sampling: SamplingTensors,
    /// The ids of the rows the states hold, in row order.
    ids: Vec<u64>,
    way: Way,
}

enum Way {
    /// One `rows × width` vector per state tensor, for `ids`.
    Direct {
        states: Vec<Vec<f32>>,
    },
    Bucketed(Buckets),
}

impl Stepper {
    /// A stepper for `session` (a graph `card` describes, on `provider`).
    pub fn new(
        session: Session,
        card: ModelCard,
        provider: Provider,
        options: &StepOptions,
    ) -> Result<Stepper, String> {
        let sampling = card.sampling()?.clone();
        let way = match options.mode_on(provider) {
            StepMode::Bucketed => Way::Bucketed(Buckets::new(&session, provider, options)?),
            StepMode::Direct | StepMode::Auto => Way::Direct { states: Vec::new() },
        };
        Ok(Stepper {
            session,
            card,
            sampling,
            ids: Vec::new(),
            way,
        })
    }

    /// The way this stepper runs (never `Auto`).
    pub fn mode(&self) -> StepMode {
        match self.way {
            Way::Direct { .. } => StepMode::Direct,
            Way::Bucketed(_) => StepMode::Bucketed,
        }
    }

    /// How this stepper runs, for the log and `ListModels`: "direct", "bucketed (powers of
    /// two)" or "bucketed (one shape of N rows)", with ", CUDA graphs" where they are asked for.
    pub fn describe(&self) -> String {
        match &self.way {
            Way::Direct { .. } => "direct".to_owned(),
            Way::Bucketed(buckets) => format!(
                "bucketed ({}){}",
                buckets
                    .batch_rows
                    .map_or("powers of two".to_owned(), |rows| format!(
                        "one shape of {rows} rows"
                    )),
                if buckets.cuda_graphs {
                    ", CUDA graphs"
                } else {
                    ""
                }
            ),
        }
    }

    /// One frame for the rows `ids`: each row's input frame and uniforms (88 values a row, row
    /// after row) and temperature. Returns the sampled frames, 88 values a row (1.0 = on).
    pub fn step(
        &mut self,
        ids: &[u64],
        frames: &[f32],
        uniforms: &[f32],
        temperatures: &[f32],
    ) -> Result<Vec<f32>, String> {
        let rows = ids.len();
        if frames.len() != rows * KEY_COUNT
            || uniforms.len() != rows * KEY_COUNT
            || temperatures.len() != rows
        {
            return Err(format!(
                "a step of {rows} rows got {} frame values, {} uniforms and {} temperatures",
                frames.len(),
                uniforms.len(),
                temperatures.len()
            ));
        }
        let changed = self.ids != ids;
        match &mut self.way {
            Way::Direct { states } => {
                if changed {
                    *states = repack(&self.card.states, &self.ids, states, ids, rows);
                }
                self.ids = ids.to_vec();
                direct_step(
                    &mut self.session,
                    &self.card,
                    &self.sampling,
                    states,
                    frames,
                    uniforms,
                    temperatures,
                )
            }
            Way::Bucketed(buckets) => {
                if changed {
                    buckets.regroup(
                        &self.session,
                        &self.card,
                        &self.sampling,
                        &self.ids,
                        ids,
                        temperatures,
                    )?;
                }
                self.ids = ids.to_vec();
                buckets.step(&mut self.session, rows, frames, uniforms)
            }
        }
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
/// direct step, the load-time invariance check ([`crate::invariance`]) and the serving bench.
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

/// The states of the rows `ids`, then padding up to `padded` rows, from the states `old` of the
/// rows `old_ids` (one `rows × width` vector per state tensor, at least `old_ids.len()` rows):
/// a row that stays keeps its state, a new row and the padding start from the initial state.
fn repack(
    specs: &[StateTensor],
    old_ids: &[u64],
    old: &[Vec<f32>],
    ids: &[u64],
    padded: usize,
) -> Vec<Vec<f32>> {
    let mut states: Vec<Vec<f32>> = specs
        .iter()
        .map(|spec| vec![spec.initial; padded * spec.width])
        .collect();
    if old.is_empty() {
        return states;
    }
    let old_rows: std::collections::HashMap<u64, usize> = old_ids
        .iter()
        .enumerate()
        .map(|(row, &id)| (id, row))
        .collect();
    for (row, id) in ids.iter().enumerate() {
        let Some(&old_row) = old_rows.get(id) else {
            continue; // new: the initial state
        };
        for ((new, old), spec) in states.iter_mut().zip(old).zip(specs) {
            let width = spec.width;
            new[row * width..(row + 1) * width]
                .copy_from_slice(&old[old_row * width..(old_row + 1) * width]);
        }
    }
    states
}

fn direct_step(
    session: &mut Session,
    card: &ModelCard,
    sampling: &SamplingTensors,
    states: &mut Vec<Vec<f32>>,
    frames: &[f32],
    uniforms: &[f32],
    temperatures: &[f32],
) -> Result<Vec<f32>, String> {
    let rows = temperatures.len();
    let inputs = step_inputs(
        card,
        rows,
        frames.to_vec(),
        uniforms.to_vec(),
        temperatures.to_vec(),
        std::mem::take(states),
    )?;
    let outputs = session.run(inputs).map_err(|e| e.to_string())?;
    let read = |name: &str, width: usize| -> Result<Vec<f32>, String> {
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
        Ok(values.to_vec())
    };
    *states = card
        .states
        .iter()
        .map(|spec| read(&spec.output, spec.width))
        .collect::<Result<_, _>>()?;
    read(&sampling.next_frame_output, KEY_COUNT)
}

/// The bucketed way: one [`Bucket`] of bound buffers per batch shape used so far.
struct Buckets {
    allocator: Allocator,
    /// Whether the buffers live where the host cannot read them (CUDA): then every transfer
    /// goes through a host tensor and ONNX Runtime's copy.
    through_host: bool,
    batch_rows: Option<usize>,
    cuda_graphs: bool,
    by_rows: BTreeMap<usize, Bucket>,
    /// The shape the states now live in, and which of its two state buffers holds them.
    current: Option<(usize, usize)>,
    next_graph_id: u32,
}

/// The bound buffers of one batch shape. `states[p]` feeds `bindings[p]`, which writes the next
/// states into `states[1 - p]`: the states never move, and neither does any other buffer, so a
/// captured CUDA graph can be replayed.
struct Bucket {
    frames: Tensor<f32>,
    uniforms: Tensor<f32>,
    temperatures: Tensor<f32>,
    next_frames: Tensor<f32>,
    states: [Vec<Tensor<f32>>; 2],
    bindings: [IoBinding; 2],
    run_options: [RunOptions<NoSelectedOutputs>; 2],
}

impl Buckets {
    fn new(
        session: &Session,
        provider: Provider,
        options: &StepOptions,
    ) -> Result<Buckets, String> {
        let allocator = match provider {
            Provider::Cpu => Allocator::default(),
            Provider::Cuda => {
                let memory = MemoryInfo::new(
                    AllocationDevice::CUDA,
                    0,
                    AllocatorType::Device,
                    MemoryType::Default,
                )
                .map_err(|e| e.to_string())?;
                Allocator::new(session, memory).map_err(|e| e.to_string())?
            }
        };
        let through_host = !allocator.memory_info().is_cpu_accessible();
        Ok(Buckets {
            allocator,
            through_host,
            batch_rows: options.batch_rows,
            cuda_graphs: options.wants_cuda_graphs(provider),
            by_rows: BTreeMap::new(),
            current: None,
            next_graph_id: 1,
        })
    }

    /// The rows changed from `old_ids` to `ids`: move the states into the shape for `ids`, each
    /// row's state to its new row, and set the rows' temperatures.
    fn regroup(
        &mut self,
        session: &Session,
        card: &ModelCard,
        sampling: &SamplingTensors,
        old_ids: &[u64],
        ids: &[u64],
        temperatures: &[f32],
    ) -> Result<(), String> {
        let old = match self.current {
            Some((shape, parity)) => self.by_rows[&shape].states[parity]
                .iter()
                .map(|tensor| download(self.through_host, tensor))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let shape = padded_rows(self.batch_rows, ids.len());
        let states = repack(&card.states, old_ids, &old, ids, shape);
        if !self.by_rows.contains_key(&shape) {
            let bucket = self.bucket(session, card, sampling, shape)?;
            self.by_rows.insert(shape, bucket);
        }
        let mut padded = vec![1.0; shape];
        padded[..temperatures.len()].copy_from_slice(temperatures);
        let through_host = self.through_host;
        let bucket = self.by_rows.get_mut(&shape).expect("inserted above");
        upload(through_host, &mut bucket.temperatures, &padded)?;
        for (tensor, values) in bucket.states[0].iter_mut().zip(&states) {
            upload(through_host, tensor, values)?;
        }
        self.current = Some((shape, 0));
        Ok(())
    }

    fn bucket(
        &mut self,
        session: &Session,
        card: &ModelCard,
        sampling: &SamplingTensors,
        rows: usize,
    ) -> Result<Bucket, String> {
        let error = |e: ort::Error| format!("a step buffer of {rows} rows: {e}");
        let tensor = |width: usize| Tensor::<f32>::new(&self.allocator, [rows, width]);
        let mut frames = tensor(KEY_COUNT).map_err(error)?;
        let mut uniforms = tensor(KEY_COUNT).map_err(error)?;
        let mut temperatures = tensor(1).map_err(error)?;
        let mut next_frames = tensor(KEY_COUNT).map_err(error)?;
        let state_set = || -> Result<Vec<Tensor<f32>>, String> {
            card.states
                .iter()
                .map(|spec| tensor(spec.width).map_err(error))
                .collect()
        };
        let mut states = [state_set()?, state_set()?];
        // Zeros before the first binding: a buffer is bound as it is, and a padding row's
        // frame and uniforms are never written otherwise.
        for buffer in [
            &mut frames,
            &mut uniforms,
            &mut temperatures,
            &mut next_frames,
        ]
        .into_iter()
        .chain(states.iter_mut().flatten())
        {
            let zeros = vec![0.0; buffer.shape().iter().product::<i64>() as usize];
            upload(self.through_host, buffer, &zeros)?;
        }
        let mut bind = |parity: usize| -> Result<IoBinding, ort::Error> {
            let mut binding = session.create_binding()?;
            binding.bind_input(card.frame_input.as_str(), &frames)?;
            binding.bind_input(sampling.uniform_input.as_str(), &uniforms)?;
            binding.bind_input(sampling.temperature_input.as_str(), &temperatures)?;
            let (first, second) = states.split_at_mut(1);
            let (from, to) = if parity == 0 {
                (&first[0], &mut second[0])
            } else {
                (&second[0], &mut first[0])
            };
            for ((spec, input), output) in card.states.iter().zip(from).zip(to.iter_mut()) {
                binding.bind_input(spec.input.as_str(), input)?;
                binding.bind_output(spec.output.as_str(), output)?;
            }
            binding.bind_output(sampling.next_frame_output.as_str(), &mut next_frames)?;
            Ok(binding)
        };
        let bindings = [bind(0).map_err(error)?, bind(1).map_err(error)?];
        let mut run_options = || -> Result<RunOptions<NoSelectedOutputs>, String> {
            let mut options = RunOptions::new().map_err(error)?;
            if self.cuda_graphs {
                // One captured graph per shape and parity (ONNX Runtime keys them by this id).
                options
                    .set("gpu_graph_id", self.next_graph_id.to_string())
                    .map_err(error)?;
                self.next_graph_id += 1;
            }
            Ok(options)
        };
        let run_options = [run_options()?, run_options()?];
        Ok(Bucket {
            frames,
            uniforms,
            temperatures,
            next_frames,
            states,
            bindings,
            run_options,
        })
    }

    fn step(
        &mut self,
        session: &mut Session,
        rows: usize,
        frames: &[f32],
        uniforms: &[f32],
    ) -> Result<Vec<f32>, String> {
        let (shape, parity) = self
            .current
            .ok_or("a bucketed step before its rows were set")?;
        let through_host = self.through_host;
        let bucket = self.by_rows.get_mut(&shape).expect("current bucket");
        let mut padded = vec![0.0; shape * KEY_COUNT];
        padded[..frames.len()].copy_from_slice(frames);
        upload(through_host, &mut bucket.frames, &padded)?;
        padded[..uniforms.len()].copy_from_slice(uniforms);
        upload(through_host, &mut bucket.uniforms, &padded)?;
        session
            .run_binding_with_options(&bucket.bindings[parity], &bucket.run_options[parity])
            .map_err(|e| e.to_string())?;
        self.current = Some((shape, 1 - parity));
        let mut next = download(through_host, &bucket.next_frames)?;
        next.truncate(rows * KEY_COUNT);
        Ok(next)
    }
}

/// The rows a batch of `rows` is padded to: `batch_rows` when given and large enough, else the
/// next power of two (a few shapes, so a few captured graphs, and at most half of one wasted).
fn padded_rows(batch_rows: Option<usize>, rows: usize) -> usize {
    batch_rows
        .filter(|&fixed| fixed >= rows)
        .unwrap_or_else(|| rows.next_power_of_two())
}

/// Write `values` into a bound buffer, in place (its address must not change).
fn upload(through_host: bool, target: &mut Tensor<f32>, values: &[f32]) -> Result<(), String> {
    if through_host {
        let shape: Vec<i64> = target.shape().to_vec();
        let host = Tensor::from_array((shape, values.to_vec())).map_err(|e| e.to_string())?;
        host.copy_into(target).map_err(|e| e.to_string())
    } else {
        let (_, data) = target.try_extract_tensor_mut().map_err(|e| e.to_string())?;
        data.copy_from_slice(values);
        Ok(())
    }
}

/// Read a bound buffer.
fn download(through_host: bool, source: &Tensor<f32>) -> Result<Vec<f32>, String> {
    if through_host {
        let shape: Vec<i64> = source.shape().to_vec();
        let mut host =
            Tensor::<f32>::new(&Allocator::default(), shape).map_err(|e| e.to_string())?;
        source.copy_into(&mut host).map_err(|e| e.to_string())?;
        Ok(host.extract_tensor().1.to_vec())
    } else {
        let (_, data) = source.try_extract_tensor().map_err(|e| e.to_string())?;
        Ok(data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_pad_to_powers_of_two_or_the_fixed_size() {
        assert_eq!(padded_rows(None, 1), 1);
        assert_eq!(padded_rows(None, 5), 8);
        assert_eq!(padded_rows(None, 64), 64);
        assert_eq!(padded_rows(Some(16), 5), 16);
        // A fixed size smaller than the batch cannot hold it.
        assert_eq!(padded_rows(Some(16), 17), 32);
    }

    #[test]
    fn repacking_keeps_each_rows_state_and_starts_new_rows_fresh() {
        let specs = [StateTensor {
            input: "h".into(),
            output: "h_next".into(),
            width: 2,
            initial: -1.0,
        }];
        // Rows 7, 8, 9 with states [7, 7], [8, 8], [9, 9]; 8 leaves, 10 joins before 7.
        let old = vec![vec![7.0, 7.0, 8.0, 8.0, 9.0, 9.0]];
        let new = repack(&specs, &[7, 8, 9], &old, &[10, 7, 9], 4);
        assert_eq!(new, vec![vec![-1.0, -1.0, 7.0, 7.0, 9.0, 9.0, -1.0, -1.0]]);
        // Nothing before: every row starts fresh.
        assert_eq!(repack(&specs, &[], &[], &[1], 1), vec![vec![-1.0, -1.0]]);
    }

    /// The transfers CUDA uses (through a host tensor and ONNX Runtime's copy) write the bound
    /// buffer in place, as a captured graph needs, and read back what was written; run here on
    /// CPU buffers, where the direct transfers must agree with them.
    #[test]
    fn transfers_through_the_host_write_in_place() {
        crate::runtime::init(None).unwrap();
        let mut buffer = Tensor::<f32>::new(&Allocator::default(), [2_usize, 3]).unwrap();
        let address = buffer.data_ptr();
        let values = [1.0, -2.0, 3.5, 0.0, 5.0, 6.25];
        upload(true, &mut buffer, &values).unwrap();
        assert_eq!(buffer.data_ptr(), address, "the buffer did not move");
        assert_eq!(download(true, &buffer).unwrap(), values);
        assert_eq!(download(false, &buffer).unwrap(), values);
        let doubled: Vec<f32> = values.iter().map(|v| v * 2.0).collect();
        upload(false, &mut buffer, &doubled).unwrap();
        assert_eq!(buffer.data_ptr(), address);
        assert_eq!(download(true, &buffer).unwrap(), doubled);
    }
}
