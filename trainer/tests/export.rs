//! `trainer export` on tiny trained models of both kinds: the ONNX step run by ONNX Runtime
//! (and by ONNX's own reference evaluator) agrees with tch's recurrent form on every step, the
//! card describes the graph, and bad checkpoints or destinations leave nothing behind.

mod common;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::{Session, SessionInputValue};
use ort::value::Tensor as OrtTensor;
use proto::card::{CARD_FILE, GRAPH_FILE, ModelCard};
use proto::sampling::Uniforms;
use tch::{Device, Kind, Tensor};
use trainer::head::{HeadKind, KeyOrder};
use trainer::model::ModelConfig;
use trainer::run::load;
use trainer::rwkv::WkvMode;
use trainer::state::State;
use trainer::train::{RunOptions, train};

use common::{
    one_at_a_time, randomise, small_dataset, tiny_lstm, tiny_rwkv, tiny_train_config, with_nade,
    with_nade_in,
};

const STEPS: usize = 64;
const TOLERANCE: f32 = 1e-4;

/// Both kinds are 24 wide and two layers deep (the card test checks the states' widths and
/// counts).
fn lstm() -> ModelConfig {
    ModelConfig::Lstm(tiny_lstm(24, 2))
}

fn rwkv() -> ModelConfig {
    ModelConfig::Rwkv(tiny_rwkv(24, 2))
}

/// Both kinds with both heads (NADE with 12 hidden units; the LSTM's decides keys lowest first,
/// the RWKV's highest first, so the parity tests cover both orders), trained briefly once per
/// test process (so BatchNorm statistics and every RWKV matrix are away from their initial
/// values).
struct Runs {
    lstm: PathBuf,
    rwkv: PathBuf,
    lstm_nade: PathBuf,
    rwkv_nade: PathBuf,
}

impl Runs {
    /// (run, name) of every run.
    fn all(&self) -> [(&Path, &'static str); 4] {
        [
            (&self.lstm, "lstm"),
            (&self.rwkv, "rwkv"),
            (&self.lstm_nade, "lstm-nade"),
            (&self.rwkv_nade, "rwkv-nade"),
        ]
    }
}

fn trained_runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let _turn = one_at_a_time();
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-test-runs");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dataset = small_dataset(&root, 12);
        let run = |model: ModelConfig, name: &str| {
            let mut config = tiny_train_config(model, &dataset);
            config.epochs = 2;
            let run = root.join(name);
            let chunked = RunOptions {
                wkv: WkvMode::Chunked(16),
                ..RunOptions::on(Device::Cpu)
            };
            train(&config, &run, chunked).unwrap();
            run
        };
        Runs {
            lstm: run(lstm(), "lstm"),
            rwkv: run(rwkv(), "rwkv"),
            lstm_nade: run(with_nade(lstm(), 12), "lstm-nade"),
            rwkv_nade: run(
                with_nade_in(rwkv(), 12, KeyOrder::HighestFirst),
                "rwkv-nade",
            ),
        }
    })
}

fn environment() -> &'static ort::environment::Environment {
    static ENVIRONMENT: OnceLock<ort::environment::Environment> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        // .cargo/config.toml points this at the copy scripts/env.sh installs.
        let library = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH is set");
        assert!(
            Path::new(&library).is_file(),
            "ONNX Runtime is not at {library}: run the tests through scripts/test.sh, which installs it"
        );
        ort::init_from(&library).unwrap().build().unwrap()
    })
}

fn session(model: &Path) -> Session {
    Session::builder(environment())
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_file(model.join(GRAPH_FILE))
        .unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.to_kind(Kind::Float).reshape([-1])).unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Random binary frames, [steps][batch * 88], from a seed.
fn random_frames(batch: usize, seed: i64) -> Vec<Vec<f32>> {
    let _turn = one_at_a_time();
    tch::manual_seed(seed);
    (0..STEPS)
        .map(|_| {
            let t = Tensor::rand([batch as i64, 88], (Kind::Float, Device::Cpu)).lt(0.1);
            to_vec(&t)
        })
        .collect()
}

/// The uniforms of `batch` generations, [steps][batch * 88]: row r draws from seed `seed + r`,
/// as the server's requests do.
fn uniforms(batch: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rows: Vec<Uniforms> = (0..batch as u64).map(|r| Uniforms::new(seed + r)).collect();
    (0..STEPS)
        .map(|_| {
            let mut step = vec![0f32; batch * 88];
            for (row, uniforms) in step.chunks_mut(88).zip(&mut rows) {
                uniforms.fill(row);
            }
            step
        })
        .collect()
}

/// A temperature away from 1, so a graph that ignored it would show.
const TEMPERATURE: f32 = 0.8;

/// What a run of steps gave: per step the logits, probabilities and sampled frames
/// ([batch * 88] each), and the final state.
#[derive(Default)]
struct Steps {
    logits: Vec<Vec<f32>>,
    probabilities: Vec<Vec<f32>>,
    next_frames: Vec<Vec<f32>>,
    final_state: Vec<Vec<f32>>,
}

/// How each step's input frame is chosen.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// These frames, one per step (teacher forcing).
    Given(&'a [Vec<f32>]),
    /// Silence first, then each step's sampled frame (free running).
    Sampled,
}

impl Input<'_> {
    fn frame(&self, step: usize, steps: &Steps, batch: usize) -> Vec<f32> {
        match self {
            Input::Given(frames) => frames[step].clone(),
            Input::Sampled => steps
                .next_frames
                .last()
                .cloned()
                .unwrap_or_else(|| vec![0.0; batch * 88]),
        }
    }
}

/// tch's recurrent form and sampling rule over `uniforms`.
fn tch_steps(run: &Path, batch: usize, input: Input, uniforms: &[Vec<f32>]) -> Steps {
    let loaded = load(run, Device::Cpu).unwrap();
    let b = batch as i64;
    let temperature = Tensor::from_slice(&vec![TEMPERATURE; batch]).reshape([b, 1]);
    tch::no_grad(|| {
        let mut state = loaded.model.zero_state(b, Device::Cpu);
        let mut steps = Steps::default();
        for (step, uniform) in uniforms.iter().enumerate() {
            let x = Tensor::from_slice(&input.frame(step, &steps, batch)).reshape([b, 88]);
            let (rows, next): (Tensor, State) = loaded.model.step(&x, &state);
            let uniform = Tensor::from_slice(uniform).reshape([b, 88]);
            let sampled = loaded.model.head.sample(&rows, &temperature, &uniform);
            steps.logits.push(to_vec(&sampled.logits));
            steps.probabilities.push(to_vec(&sampled.probabilities));
            steps.next_frames.push(to_vec(&sampled.frame));
            state = next;
        }
        steps.final_state = state.per_layer().iter().map(to_vec).collect();
        steps
    })
}

/// ONNX Runtime over `uniforms`, driven only by what model.json says. A format 1 card (logits
/// only) gets no uniforms and gives logits only.
fn ort_steps(model: &Path, batch: usize, input: Input, uniforms: &[Vec<f32>]) -> Steps {
    let card = ModelCard::read(model).unwrap();
    let mut session = session(model);
    let mut state: Vec<Vec<f32>> = card
        .states
        .iter()
        .map(|s| vec![s.initial; batch * s.width])
        .collect();
    let tensor = |width: usize, values: Vec<f32>| -> SessionInputValue<'static> {
        OrtTensor::from_array(([batch, width], values))
            .unwrap()
            .into()
    };
    let mut steps = Steps::default();
    for (step, uniform) in uniforms.iter().enumerate() {
        let frame = input.frame(step, &steps, batch);
        let mut inputs: Vec<(Cow<str>, SessionInputValue)> =
            vec![(card.frame_input.clone().into(), tensor(88, frame))];
        if let Some(sampling) = &card.sampling {
            inputs.push((
                sampling.uniform_input.clone().into(),
                tensor(88, uniform.clone()),
            ));
            inputs.push((
                sampling.temperature_input.clone().into(),
                tensor(1, vec![TEMPERATURE; batch]),
            ));
        }
        for (spec, values) in card.states.iter().zip(&state) {
            inputs.push((
                spec.input.clone().into(),
                tensor(spec.width, values.clone()),
            ));
        }
        let outputs = session.run(inputs).unwrap();
        let read = |name: &str| -> Vec<f32> {
            let (shape, data) = outputs[name].try_extract_tensor::<f32>().unwrap();
            assert_eq!(shape[0], batch as i64, "{name} has the batch first");
            data.to_vec()
        };
        steps.logits.push(read(&card.logits_output));
        if let Some(sampling) = &card.sampling {
            steps
                .probabilities
                .push(read(&sampling.probabilities_output));
            steps.next_frames.push(read(&sampling.next_frame_output));
        }
        state = card.states.iter().map(|s| read(&s.output)).collect();
    }
    steps.final_state = state;
    steps
}

/// `run` (a run folder or a checkpoint in one) exported to a model folder called `name`.
fn exported(run: &Path, name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-test-runs");
    let out = root.join("models").join(name);
    let _ = std::fs::remove_dir_all(&out);
    trainer::export::export(run, &out, false).unwrap();
    out
}

/// A checkpoint beside the run's, with every weight and statistic replaced by random values of
/// a moderate scale, so that no small or zero-initialised weight hides a mistake in the graph.
fn randomised_checkpoint(run: &Path) -> PathBuf {
    let path = run.join("randomised.safetensors");
    let _turn = one_at_a_time();
    let loaded = load(run, Device::Cpu).unwrap();
    tch::manual_seed(5);
    randomise(&loaded.vs);
    loaded.vs.save(&path).unwrap();
    path
}

/// ONNX Runtime agrees with tch on every step of 64 steps (each carrying its own state) at
/// batch 1 and 7, for the trained and for randomised weights: the same logits, probabilities
/// and state, and the same sampled frames from the same uniforms.
fn parity(run: &Path, kind: &str) {
    let randomised = randomised_checkpoint(run);
    parity_of(run, kind);
    parity_of(&randomised, &format!("{kind}-randomised"));
}

fn parity_of(run: &Path, kind: &str) {
    let model = exported(run, kind);
    for (batch, seed) in [(1, 11), (7, 12)] {
        let frames = random_frames(batch, seed);
        let uniforms = uniforms(batch, seed as u64);
        let expected = tch_steps(run, batch, Input::Given(&frames), &uniforms);
        let actual = ort_steps(&model, batch, Input::Given(&frames), &uniforms);
        let mut worst: f32 = 0.0;
        for (what, e, a) in [
            ("logits", &expected.logits, &actual.logits),
            (
                "probabilities",
                &expected.probabilities,
                &actual.probabilities,
            ),
        ] {
            for (step, (e, a)) in e.iter().zip(a).enumerate() {
                let difference = max_difference(e, a);
                worst = worst.max(difference);
                assert!(
                    difference < TOLERANCE,
                    "{kind}, batch {batch}, step {step}: {what} differ by {difference}"
                );
            }
        }
        eprintln!("{kind}, batch {batch}: largest difference over {STEPS} steps {worst:e}");
        assert_eq!(
            expected.next_frames, actual.next_frames,
            "{kind}, batch {batch}: sampled frames differ"
        );
        assert_eq!(expected.final_state.len(), actual.final_state.len());
        for (i, (e, a)) in expected
            .final_state
            .iter()
            .zip(&actual.final_state)
            .enumerate()
        {
            let difference = max_difference(e, a);
            assert!(
                difference < TOLERANCE,
                "{kind}, batch {batch}: final state tensor {i} differs by {difference}"
            );
        }
    }
}

#[test]
fn lstm_step_in_onnx_runtime_matches_tch() {
    parity(&trained_runs().lstm, "lstm");
}

#[test]
fn lstm_nade_step_in_onnx_runtime_matches_tch() {
    parity(&trained_runs().lstm_nade, "lstm-nade");
}

#[test]
fn lstm_without_batch_norm_step_in_onnx_runtime_matches_tch() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-test-no-batch-norm");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let run = {
        let _turn = one_at_a_time();
        let dataset = small_dataset(&root, 4);
        let mut model = lstm();
        if let ModelConfig::Lstm(lstm) = &mut model {
            lstm.batch_norm = false;
        }
        let mut config = tiny_train_config(model, &dataset);
        config.max_steps = Some(3);
        let run = root.join("run");
        train(&config, &run, RunOptions::on(Device::Cpu)).unwrap();
        run
    };
    parity(&run, "lstm-no-batch-norm");
}

#[test]
fn rwkv_step_in_onnx_runtime_matches_tch() {
    parity(&trained_runs().rwkv, "rwkv");
}

#[test]
fn rwkv_nade_step_in_onnx_runtime_matches_tch() {
    parity(&trained_runs().rwkv_nade, "rwkv-nade");
}

/// Generation as the server and `trainer sample` run it: each sampled frame fed back. Over 64
/// free-running frames at batch 1 and 7 (rows with their own uniforms), tch and ONNX Runtime
/// sample the same frames, for both families and both heads.
#[test]
fn free_running_generation_samples_the_same_frames_in_tch_and_onnx_runtime() {
    for (run, name) in trained_runs().all() {
        let model = exported(run, &format!("{name}-free"));
        for batch in [1, 7] {
            let uniforms = uniforms(batch, 40);
            let expected = tch_steps(run, batch, Input::Sampled, &uniforms);
            let actual = ort_steps(&model, batch, Input::Sampled, &uniforms);
            let notes: f32 = expected.next_frames.iter().flatten().sum();
            assert!(notes > 0.0, "{name}: the model sampled only silence");
            for (step, (e, a)) in expected
                .next_frames
                .iter()
                .zip(&actual.next_frames)
                .enumerate()
            {
                assert_eq!(e, a, "{name}, batch {batch}: frame {step} differs");
            }
        }
    }
}

#[test]
fn card_describes_the_graph_and_the_run() {
    let runs = trained_runs();
    for (run, name, kind, head, per_layer) in [
        (&runs.lstm, "lstm", "lstm", HeadKind::Bernoulli, 2),
        (&runs.rwkv, "rwkv", "rwkv", HeadKind::Bernoulli, 5),
        (&runs.rwkv_nade, "rwkv-nade", "rwkv", HeadKind::Nade, 5),
    ] {
        let model = exported(run, &format!("{name}-card"));
        let card = ModelCard::read(&model).unwrap();
        assert_eq!(card.kind, kind);
        assert_eq!(card.head, head);
        assert_eq!(card.format_version, proto::card::FORMAT_VERSION);
        assert!(card.sampling.is_some());
        assert_eq!(card.states.len(), 2 * per_layer, "two layers");
        assert_eq!(card.states[0].width, 24);
        assert!(card.metrics.parameters > 0);
        assert!(card.metrics.test_nll_per_frame.is_some());
        assert!(card.metrics.epoch.is_some());
        assert_eq!(card.source.sha256.len(), 64);
        assert_eq!(card.roll_settings, pianoroll::RollSettings::benchmark());
        // The graph's inputs and outputs are exactly the card's names.
        let session = session(&model);
        let mut inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let mut outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let mut want_in = card.input_names();
        let mut want_out = card.output_names();
        for v in [&mut inputs, &mut outputs, &mut want_in, &mut want_out] {
            v.sort_unstable();
        }
        assert_eq!(inputs, want_in);
        assert_eq!(outputs, want_out);
    }
}

/// Nothing but the named entries in `dir` (no staging folders left behind).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn bad_checkpoints_and_destinations_leave_nothing_behind() {
    let lstm_run = &trained_runs().lstm;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    for file in ["config.json", "best.safetensors"] {
        std::fs::copy(lstm_run.join(file), run.join(file)).unwrap();
    }
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();

    // A truncated checkpoint.
    let weights = std::fs::read(run.join("best.safetensors")).unwrap();
    std::fs::write(run.join("cut.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let error = trainer::export::export(&run.join("cut.safetensors"), &models.join("a"), false)
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("cut.safetensors"),
        "{error:#}"
    );
    assert!(entries(&models).is_empty(), "{:?}", entries(&models));

    // Weights of another shape than config.json says.
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    config["model"]["hidden"] = 32.into();
    std::fs::write(run.join("config.json"), config.to_string()).unwrap();
    let error = trainer::export::export(&run, &models.join("b"), false).unwrap_err();
    assert!(
        format!("{error:#}").contains("best.safetensors"),
        "{error:#}"
    );
    assert!(entries(&models).is_empty(), "{:?}", entries(&models));

    // An existing destination needs --force, and only a model folder is ever replaced.
    let good = exported(lstm_run, "good");
    let card_before = std::fs::read(good.join(CARD_FILE)).unwrap();
    let error = trainer::export::export(lstm_run, &good, false).unwrap_err();
    assert!(format!("{error:#}").contains("--force"), "{error:#}");
    assert_eq!(std::fs::read(good.join(CARD_FILE)).unwrap(), card_before);
    trainer::export::export(lstm_run, &good, true).unwrap();
    let precious = dir.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep me").unwrap();
    let error = trainer::export::export(lstm_run, &precious, true).unwrap_err();
    assert!(
        format!("{error:#}").contains("not a model folder"),
        "{error:#}"
    );
    assert_eq!(entries(&precious), ["notes.txt"]);
}

/// ONNX's own checker (full check, with shape inference) accepts the files, and ONNX's
/// reference evaluator — a second, independent runtime — computes the same logits and samples
/// the same frames as tch.
#[test]
fn onnx_checker_and_reference_evaluator_agree() {
    let Some(python) = pianoroll_tests::python() else {
        return;
    };
    let runs = trained_runs();
    for (run, kind) in [
        (&runs.lstm, "lstm"),
        (&runs.rwkv, "rwkv"),
        (&runs.lstm_nade, "lstm-nade"),
    ] {
        let model = exported(run, &format!("{kind}-reference"));
        let batch = 3;
        let frames = random_frames(batch, 21);
        let uniforms = uniforms(batch, 21);
        let expected = tch_steps(run, batch, Input::Given(&frames[..16]), &uniforms[..16]);
        let frames_path = model.parent().unwrap().join(format!("{kind}-frames.json"));
        let feeds = serde_json::json!({
            "frames": &frames[..16],
            "uniforms": &uniforms[..16],
            "temperature": TEMPERATURE,
        });
        std::fs::write(&frames_path, feeds.to_string()).unwrap();
        let script = r#"
import json, sys
import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
folder, frames_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
onnx.checker.check_model(folder + "/model.onnx", full_check=True)
card = json.load(open(folder + "/model.json"))
session = ReferenceEvaluator(folder + "/model.onnx")
state = {s["input"]: np.full((batch, s["width"]), s["initial"], np.float32) for s in card["states"]}
sampling = card["sampling"]
names = [card["logits_output"], sampling["next_frame_output"]] + [s["output"] for s in card["states"]]
given = json.load(open(frames_path))
temperature = np.full((batch, 1), given["temperature"], np.float32)
logits, next_frames = [], []
for frame, uniform in zip(given["frames"], given["uniforms"]):
    feeds = dict(state)
    feeds[card["frame_input"]] = np.array(frame, np.float32).reshape(batch, 88)
    feeds[sampling["uniform_input"]] = np.array(uniform, np.float32).reshape(batch, 88)
    feeds[sampling["temperature_input"]] = temperature
    out = dict(zip(names, session.run(names, feeds)))
    logits.append(out[card["logits_output"]].reshape(-1).tolist())
    next_frames.append(out[sampling["next_frame_output"]].reshape(-1).tolist())
    state = {s["input"]: out[s["output"]] for s in card["states"]}
print(json.dumps([logits, next_frames]))
"#;
        let output = std::process::Command::new(&python)
            .args(["-c", script])
            .arg(&model)
            .arg(&frames_path)
            .arg(batch.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (logits, next_frames): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
            serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(logits.len(), expected.logits.len());
        for (step, (e, a)) in expected.logits.iter().zip(&logits).enumerate() {
            let difference = max_difference(e, a);
            assert!(
                difference < TOLERANCE,
                "{kind}, step {step}: reference evaluator differs by {difference}"
            );
        }
        assert_eq!(expected.next_frames, next_frames, "{kind}: sampled frames");
    }
}

/// A run folder and a model folder written by an earlier trainer (the one whose configs still
/// held the WKV chunk length; see `tests/fixtures/README.md`) still load with today's code: the
/// run reads back, its checkpoint scores what its results.json says on the same pieces, its
/// old model card drives ONNX Runtime to tch's logits, and a fresh export of it does the same.
#[test]
fn old_run_folders_and_model_cards_still_load() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let run = fixtures.join("old-rwkv-run");
    let old_model = fixtures.join("old-rwkv-model");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert!(
        config["model"]["wkv_chunk"].is_i64(),
        "the fixture is from before the WKV form left the config"
    );

    let summary = trainer::run::RunSummary::read(&run).unwrap();
    let results = summary.results.expect("the old run finished");
    assert_eq!(summary.rows.len(), results.epochs);
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(dir.path(), 3); // the pieces the fixture was trained on
    let report = trainer::evaluate::evaluate_checkpoint(
        &run,
        pipeline::dataset::Split::Test,
        Some(&dataset),
        Device::Cpu,
        WkvMode::Scan,
    )
    .unwrap();
    let gap = (report.scores.nll_per_frame - results.test.nll_per_frame).abs();
    assert!(
        gap < 1e-4,
        "scored {report}, the run said {:?}",
        results.test
    );

    let card = ModelCard::read(&old_model).unwrap();
    assert_eq!(card.kind, "rwkv");
    assert_eq!(card.format_version, proto::card::FORMAT_VERSION_LOGITS_ONLY);
    assert!(card.sampling().is_err(), "a format 1 card has no sampling");
    let frames = random_frames(2, 12);
    let uniforms = uniforms(2, 12);
    let reference = tch_steps(&run, 2, Input::Given(&frames), &uniforms);
    let old_graph = ort_steps(&old_model, 2, Input::Given(&frames), &uniforms);
    let again = dir.path().join("old-run-again");
    trainer::export::export(&run, &again, false).unwrap();
    let new_graph = ort_steps(&again, 2, Input::Given(&frames), &uniforms);
    assert_eq!(new_graph.next_frames, reference.next_frames);
    for (name, steps) in [("old model folder", old_graph), ("new export", new_graph)] {
        let worst = reference
            .logits
            .iter()
            .zip(&steps.logits)
            .map(|(a, b)| max_difference(a, b))
            .fold(0.0, f32::max);
        assert!(worst < TOLERANCE, "{name}: logits differ by {worst}");
    }
}

const CHECK_TRITON_CONFIG: &str = r#"
import json, sys
import numpy as np
import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

folder = sys.argv[1]
config = text_format.Parse(open(folder + "/config.pbtxt").read(), model_config_pb2.ModelConfig())
card = json.load(open(folder + "/model.json"))
graph = onnx.load(folder + "/1/model.onnx").graph
width = {v.name: v.type.tensor_type.shape.dim[1].dim_value for v in list(graph.input) + list(graph.output)}
problems = []
states = config.sequence_batching.state
declared_in = [i.name for i in config.input] + [s.input_name for s in states]
declared_out = [o.name for o in config.output] + [s.output_name for s in states]
if sorted(declared_in) != sorted(i.name for i in graph.input):
    problems.append(f"inputs {sorted(declared_in)} != graph {sorted(i.name for i in graph.input)}")
if sorted(declared_out) != sorted(o.name for o in graph.output):
    problems.append(f"outputs {sorted(declared_out)} != graph {sorted(o.name for o in graph.output)}")
for t in list(config.input) + list(config.output):
    if list(t.dims) != [width[t.name]] or t.data_type != model_config_pb2.TYPE_FP32:
        problems.append(f"{t.name}: dims {list(t.dims)}, graph width {width[t.name]}")
initial = {s["input"]: s["initial"] for s in card["states"]}
for s in states:
    if len(s.initial_state) != 1:
        problems.append(f"state {s.input_name}: {len(s.initial_state)} initial states")
        continue
    start = s.initial_state[0]
    if list(s.dims) != [width[s.input_name]] or list(start.dims) != list(s.dims):
        problems.append(f"state {s.input_name}: dims {list(s.dims)}")
    if start.WhichOneof("state_data") == "zero_data":
        if initial[s.input_name] != 0:
            problems.append(f"state {s.input_name}: zero_data but starts at {initial[s.input_name]}")
    else:
        values = np.fromfile(folder + "/initial_state/" + start.data_file, dtype="<f4")
        if len(values) != s.dims[0] or not np.all(values == np.float32(initial[s.input_name])):
            problems.append(f"state {s.input_name}: initial_state file holds {values[:3]}...")
print(json.dumps({"name": config.name, "backend": config.backend, "states": len(states),
                  "max_batch_size": config.max_batch_size, "problems": problems}))
"#;

/// `trainer export --triton`: Triton's own `ModelConfig` (tritonclient's protobuf, text format)
/// reads `config.pbtxt`, and every input, output and implicit state it declares is the ONNX
/// graph's, with the graph's width and the card's initial value, for both families.
#[test]
fn triton_model_repository_matches_the_graph() {
    let Some(python) = pianoroll_tests::python() else {
        return;
    };
    let runs = trained_runs();
    let repository = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("triton-repository");
    let _ = std::fs::remove_dir_all(&repository);
    for (run, name, states) in [(&runs.lstm_nade, "lstm-nade", 4), (&runs.rwkv, "rwkv", 10)] {
        trainer::export::export_triton(run, &repository, name, false).unwrap();
        let output = std::process::Command::new(&python)
            .args(["-c", CHECK_TRITON_CONFIG])
            .arg(repository.join(name))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(seen["problems"], serde_json::json!([]), "{name}: {seen}");
        assert_eq!(seen["name"], name);
        assert_eq!(seen["backend"], "onnxruntime");
        assert_eq!(seen["states"], states);
        assert!(seen["max_batch_size"].as_u64().unwrap() > 1);
    }
    // Only a Triton model folder is replaced, and only with force.
    let error = trainer::export::export_triton(&runs.rwkv, &repository, "rwkv", false).unwrap_err();
    assert!(format!("{error:#}").contains("--force"), "{error:#}");
    trainer::export::export_triton(&runs.rwkv, &repository, "rwkv", true).unwrap();
    let error = trainer::export::export_triton(&runs.rwkv, &repository, "../x", true).unwrap_err();
    assert!(format!("{error:#}").contains("--name"), "{error:#}");
}
