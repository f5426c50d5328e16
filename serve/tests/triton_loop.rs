//! The Triton step-loop example (`deploy/triton/step_loop.py`) against a Triton model
//! repository made from a shipped model the way `trainer export --triton` makes one
//! (`proto::triton`). No Triton server can be installed here, so the test plays Triton's part
//! with what Triton itself would run: PyPI's ONNX Runtime on the repository's `model.onnx`,
//! holding each sequence's implicit state as `config.pbtxt` (read with tritonclient's own
//! `ModelConfig`) declares it, initial values from its files, and refusing steps that break
//! the sequence protocol.

const PLAY_TRITON: &str = r#"
import importlib.util, json, sys
import mido
import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

repository, name, example, midi_path = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("step_loop", example)
step_loop = importlib.util.module_from_spec(spec)
spec.loader.exec_module(step_loop)

folder = f"{repository}/{name}"
config = text_format.Parse(open(f"{folder}/config.pbtxt").read(), model_config_pb2.ModelConfig())
session = ort.InferenceSession(f"{folder}/1/model.onnx", providers=["CPUExecutionProvider"])
graph_inputs = {i.name for i in session.get_inputs()}
graph_outputs = [o.name for o in session.get_outputs()]

def initial(state):
    shape = [1] + list(state.dims)
    init = state.initial_state[0]  # repeated in Triton's ModelConfig
    if init.zero_data:
        return np.zeros(shape, np.float32)
    return np.fromfile(f"{folder}/initial_state/{init.data_file}", np.float32).reshape(shape)

class SequenceBatcher:
    """Triton's sequence batcher for this model: implicit state per sequence id."""
    def __init__(self):
        self.states, self.log = {}, []
    def step(self, sequence_id, frame, uniform, temperature, start, end):
        self.log.append((sequence_id, start, end))
        if start:
            self.states[sequence_id] = {s.input_name: initial(s) for s in config.sequence_batching.state}
        elif sequence_id not in self.states:
            raise RuntimeError(f"sequence {sequence_id}: a step before its start")
        feeds = dict(self.states[sequence_id])
        for tensor, value in zip(config.input, [frame.reshape(1, -1), uniform.reshape(1, -1),
                                                np.full((1, 1), temperature, np.float32)]):
            assert tensor.name in graph_inputs, tensor.name
            feeds[tensor.name] = value.astype(np.float32)
        outputs = dict(zip(graph_outputs, session.run(None, feeds)))
        self.states[sequence_id] = {s.input_name: outputs[s.output_name]
                                    for s in config.sequence_batching.state}
        if end:
            del self.states[sequence_id]
        return outputs[config.output[0].name][0]

triton = SequenceBatcher()
def sequence(sequence_id):
    return lambda *args, start, end: triton.step(sequence_id, *args, start=start, end=end)

piece = step_loop.generate(sequence(1), 48, seed=7)
again = step_loop.generate(sequence(2), 48, seed=7)
other = step_loop.generate(sequence(3), 48, seed=8)
calls_alone = len(triton.log)
primer = [np.eye(88, dtype=np.float32)[39 + 4 * (t % 3)] for t in range(5)]
primed = step_loop.generate(sequence(4), 10, seed=7, primer=primer)
flags = [(start, end) for sid, start, end in triton.log if sid == 4]
step_loop.write_midi(piece, midi_path)
notes = [m for m in mido.MidiFile(midi_path).tracks[0] if m.type == "note_on"]
onsets = int(((piece[1:] > 0) & (piece[:-1] == 0)).sum() + (piece[0] > 0).sum())
try:
    step_loop.generate(sequence(5), 0, seed=1)
    zero = "accepted"
except ValueError as e:
    zero = str(e)
print(json.dumps({
    "shape": list(piece.shape),
    "binary": bool(np.isin(piece, [0, 1]).all()),
    "sounding": float(piece.mean()),
    "same_seed_same_piece": bool((piece == again).all()),
    "other_seed_differs": bool((piece != other).any()),
    "calls_alone": calls_alone,
    "primed_shape": list(primed.shape),
    "primed_flags": flags,
    "open_sequences": sorted(triton.states),
    "notes": len(notes),
    "onsets": onsets,
    "zero_frames": zero,
}))
"#;

#[test]
fn the_triton_step_loop_example_generates_with_the_exported_repository() {
    let Some(python) = pianoroll_tests::python() else {
        return;
    };
    let root = pianoroll_tests::repo_root();
    let shipped = root.join("models/lstm-nade");
    let card = proto::card::ModelCard::read(&shipped).unwrap();
    let repository = tempfile::tempdir().unwrap();
    let folder = repository.path().join("lstm-nade");
    std::fs::create_dir_all(folder.join("1")).unwrap();
    std::fs::create_dir_all(folder.join(proto::triton::INITIAL_STATE_DIR)).unwrap();
    std::fs::write(
        folder.join("config.pbtxt"),
        proto::triton::config_pbtxt("lstm-nade", &card).unwrap(),
    )
    .unwrap();
    std::fs::copy(shipped.join("model.onnx"), folder.join("1/model.onnx")).unwrap();
    for state in card.states.iter().filter(|s| s.initial != 0.0) {
        std::fs::write(
            folder
                .join(proto::triton::INITIAL_STATE_DIR)
                .join(proto::triton::initial_state_file(&state.input)),
            proto::triton::initial_state_bytes(state.initial, state.width),
        )
        .unwrap();
    }
    let midi = repository.path().join("piece.mid");
    let example = root.join("deploy/triton/step_loop.py");
    let seen = pianoroll_tests::python_json(
        &python,
        PLAY_TRITON,
        &[
            repository.path().as_os_str(),
            "lstm-nade".as_ref(),
            example.as_os_str(),
            midi.as_os_str(),
        ],
    );
    assert_eq!(seen["shape"], serde_json::json!([48, 88]));
    assert_eq!(seen["binary"], true);
    let sounding = seen["sounding"].as_f64().unwrap();
    // Nottingham sounds about 4 of 88 keys a frame; a model that learned anything is near.
    assert!(
        (0.01..0.2).contains(&sounding),
        "share of keys sounding {sounding}"
    );
    assert_eq!(seen["same_seed_same_piece"], true);
    assert_eq!(seen["other_seed_differs"], true);
    assert_eq!(seen["calls_alone"], 3 * 48);
    // 5 primer frames then 10 new ones: 14 steps, the first starting and the last ending.
    assert_eq!(seen["primed_shape"], serde_json::json!([10, 88]));
    let flags = seen["primed_flags"].as_array().unwrap();
    assert_eq!(flags.len(), 14);
    assert_eq!(flags[0], serde_json::json!([true, false]));
    assert_eq!(flags[13], serde_json::json!([false, true]));
    assert!(
        flags[1..13]
            .iter()
            .all(|f| f == &serde_json::json!([false, false]))
    );
    assert_eq!(
        seen["open_sequences"],
        serde_json::json!([]),
        "every sequence ended"
    );
    assert_eq!(seen["notes"], seen["onsets"], "a MIDI note per onset");
    assert!(seen["zero_frames"].as_str().unwrap().contains("at least 1"));

    // The command line parses.
    let help = std::process::Command::new(&python)
        .arg(&example)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--sequence-id"));
}
