//! On a CUDA device the trainer computes what it computes on the CPU, learns, samples, and
//! writes checkpoints that load back on the CPU. Every test here is skipped, with a message,
//! where libtorch finds no GPU (CI, laptops).

mod common;

use pipeline::dataset::Split;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use trainer::data::SplitData;
use trainer::evaluate::evaluate;
use trainer::model::{Model, ModelConfig};
use trainer::rwkv::WkvMode;
use trainer::train::{RunOptions, train};

use common::{one_at_a_time, randomise, small_dataset, tiny_lstm, tiny_rwkv, tiny_train_config};

/// The first GPU, or `None` after saying why the test does nothing.
fn cuda() -> Option<Device> {
    if trainer::device::cuda_available() {
        Some(Device::Cuda(0))
    } else {
        eprintln!("skipped: no CUDA device (needs an NVIDIA GPU and the CUDA build of libtorch)");
        None
    }
}

fn small_lstm() -> ModelConfig {
    ModelConfig::Lstm(tiny_lstm(32, 2))
}

fn small_rwkv() -> ModelConfig {
    ModelConfig::Rwkv(tiny_rwkv(32, 3))
}

/// Largest difference between the CPU's and the GPU's logits for the same random weights and
/// inputs, relative to the largest logit: over one parallel pass of `steps` frames and over the
/// first 70 recurrent steps.
fn cpu_cuda_difference(config: ModelConfig, wkv: WkvMode, cuda: Device, steps: i64) -> (f64, f64) {
    let _turn = one_at_a_time();
    tch::manual_seed(3);
    let cpu_vs = VarStore::new(Device::Cpu);
    let mut cpu_model = Model::new(&cpu_vs.root(), &config);
    cpu_model.set_wkv(wkv);
    randomise(&cpu_vs);
    let mut cuda_vs = VarStore::new(cuda);
    let mut cuda_model = Model::new(&cuda_vs.root(), &config);
    cuda_model.set_wkv(wkv);
    cuda_vs.copy(&cpu_vs).unwrap();
    let batch = 3;
    let x = Tensor::rand([batch, steps, 88], (Kind::Float, Device::Cpu))
        .lt(0.1)
        .to_kind(Kind::Float);
    let relative = |a: &Tensor, b: &Tensor| {
        let b = b.to_device(Device::Cpu);
        let scale = a.abs().max().double_value(&[]).max(1.0);
        (a - b).abs().max().double_value(&[]) / scale
    };
    tch::no_grad(|| {
        let pass = |model: &Model, device: Device| {
            model
                .forward(
                    &x.to_device(device),
                    None,
                    &model.zero_state(batch, device),
                    false,
                )
                .0
        };
        let parallel = relative(&pass(&cpu_model, Device::Cpu), &pass(&cuda_model, cuda));
        let mut cpu_state = cpu_model.zero_state(batch, Device::Cpu);
        let mut cuda_state = cuda_model.zero_state(batch, cuda);
        let mut recurrent: f64 = 0.0;
        for t in 0..steps.min(70) {
            let frame = x.select(1, t);
            let (cpu_logits, next_cpu) = cpu_model.step(&frame, &cpu_state);
            let (cuda_logits, next_cuda) = cuda_model.step(&frame.to_device(cuda), &cuda_state);
            let difference = relative(&cpu_logits, &cuda_logits);
            if difference > recurrent || difference.is_nan() {
                recurrent = difference;
            }
            (cpu_state, cuda_state) = (next_cpu, next_cuda);
        }
        (parallel, recurrent)
    })
}

/// CUDA's float32 kernels sum in other orders than the CPU's (and cuDNN's LSTM may use TF32),
/// so the two agree to about 1e-3 of the logits' scale, not bit for bit; a misplaced tensor or
/// a wrong kernel shows up as differences of order 1.
const CPU_CUDA_TOLERANCE: f64 = 2e-3;

#[test]
fn lstm_on_cuda_computes_what_it_computes_on_the_cpu() {
    let Some(cuda) = cuda() else { return };
    let (parallel, recurrent) = cpu_cuda_difference(small_lstm(), WkvMode::Scan, cuda, 300);
    eprintln!("LSTM CPU vs CUDA: parallel {parallel:.2e}, recurrent {recurrent:.2e}");
    assert!(parallel < CPU_CUDA_TOLERANCE, "parallel form: {parallel}");
    assert!(
        recurrent < CPU_CUDA_TOLERANCE,
        "recurrent form: {recurrent}"
    );
}

/// The WKV scan (f64 prefix log-sum-exp) and the chunked form both run on CUDA, over a piece
/// longer than the benchmark's median.
#[test]
fn rwkv_on_cuda_computes_what_it_computes_on_the_cpu() {
    let Some(cuda) = cuda() else { return };
    for chunk in [0, 8] {
        let (parallel, recurrent) =
            cpu_cuda_difference(small_rwkv(), WkvMode::from_chunk(chunk).unwrap(), cuda, 600);
        eprintln!(
            "RWKV (WKV chunk {chunk}) CPU vs CUDA: parallel {parallel:.2e}, recurrent {recurrent:.2e}"
        );
        assert!(parallel < CPU_CUDA_TOLERANCE, "chunk {chunk}: {parallel}");
        assert!(recurrent < CPU_CUDA_TOLERANCE, "chunk {chunk}: {recurrent}");
    }
}

/// A whole run on the GPU: the loss falls, the model beats the key-rate baseline, the best
/// checkpoint loads on the CPU and scores there what the GPU run reported, and sampling on the
/// GPU gives frames.
#[test]
fn training_on_cuda_learns_and_its_checkpoint_runs_on_the_cpu() {
    let Some(cuda) = cuda() else { return };
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 40);
    for model in [small_lstm(), small_rwkv()] {
        let run = dir.path().join(model.kind());
        let config = tiny_train_config(model, &dataset);
        let results = train(&config, &run, RunOptions::on(cuda)).unwrap().unwrap();
        let summary = trainer::run::RunSummary::read(&run).unwrap();
        let (first, last) = (
            summary.rows.first().unwrap().train_nll,
            summary.rows.last().unwrap().train_nll,
        );
        eprintln!(
            "{} on CUDA: train NLL {first:.3} -> {last:.3}, test NLL {:.3} (baseline {:.3})",
            model.kind(),
            results.test.nll_per_frame,
            results.test_key_rate_baseline_nll
        );
        assert!(last < 0.8 * first, "{}: {first} -> {last}", model.kind());
        assert!(results.test.nll_per_frame < results.test_key_rate_baseline_nll);

        let loaded = trainer::run::load(&run, Device::Cpu).unwrap();
        let valid = SplitData::load(&dataset, Split::Valid, Some(&config.roll_settings)).unwrap();
        let on_cpu = evaluate(
            &loaded.model,
            &valid,
            config.batch_size,
            config.silent_start,
            Device::Cpu,
        );
        let gap = (on_cpu.nll_per_frame - results.valid.nll_per_frame).abs();
        assert!(
            gap < 1e-3 * results.valid.nll_per_frame,
            "{}: valid NLL {} on CUDA, {} on the CPU",
            model.kind(),
            results.valid.nll_per_frame,
            on_cpu.nll_per_frame
        );

        let on_gpu = trainer::run::load(&run, cuda).unwrap();
        let roll = trainer::sample::generate(&on_gpu.model, false, &[], 64, 1.0, 5, cuda).unwrap();
        assert_eq!(roll.len(), 64);
        assert!(roll.frames().iter().any(|f| f.keys().next().is_some()));
    }
}
