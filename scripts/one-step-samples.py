"""Are a model's chords right one frame at a time? Resample each test frame from the true past.

Samples that land far from the data (`scripts/sample-test.sh`) can mean two things: the model's
distribution for a frame is wrong, or it is right given real music but drifts once it hears
its own. This tells them apart. Every test piece of the project grid (its first 256 frames, as
long as a sample) is fed to the exported step graph frame by frame, as the server feeds a
primer, and at each step the graph samples the next frame (temperature 1, seed 0); the
sampled frames are compared with the true frames they stand in for, by the pitch-class-set
distance of `pipeline stats --music` (total variation over sounding frames). Then it prints
the pitch-class sets whose shares differ most. Run it with the project's Python:
    .venv/bin/python scripts/one-step-samples.py models/lstm-nade models/rwkv-nade
The distance and the chord names are those of scripts/chord-usage.py.
"""

import collections
import importlib.util
import json
import pathlib
import sys

import numpy as np
import onnxruntime
import pyarrow.ipc as ipc

_spec = importlib.util.spec_from_file_location(
    "chord_usage", pathlib.Path(__file__).with_name("chord-usage.py")
)
chords = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chords)

TEST_SPLIT = pathlib.Path(__file__).resolve().parent.parent / "out/nottingham/test.arrow"
FRAMES = 256
SHOWN = 5


def test_rolls(lowest_pitch, keys):
    """The test pieces' first FRAMES frames as a (pieces, FRAMES, keys) array, and their lengths."""
    rolls = ipc.open_file(TEST_SPLIT).read_all().to_pydict()["roll"]
    frames = np.zeros((len(rolls), FRAMES, keys), np.float32)
    lengths = np.zeros(len(rolls), int)
    for i, roll in enumerate(rolls):
        for t, frame in enumerate(roll[:FRAMES]):
            frames[i, t, [pitch - lowest_pitch for pitch in frame]] = 1
        lengths[i] = min(len(roll), FRAMES)
    return frames, lengths


def pitch_class_sets(frames, lengths, lowest_pitch, first):
    """Each sounding frame's pitch-class set's share, over frames first..length of each piece."""
    counts = collections.Counter(
        frozenset(int(key + lowest_pitch) % 12 for key in np.flatnonzero(frames[i, t]))
        for i in range(len(frames))
        for t in range(first, lengths[i])
    )
    counts.pop(frozenset(), None)
    sounding = sum(counts.values())
    return {s: n / sounding for s, n in counts.items()}


def one_step_samples(folder, card, frames):
    """Frame t of each piece sampled by the graph after the true frames before it, and the
    first frame that is such a sample (0 with a silent start, else 1)."""
    sampling = card["sampling"]
    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    pieces = len(frames)
    states = {
        s["input"]: np.full((pieces, s["width"]), s["initial"], np.float32) for s in card["states"]
    }
    outputs = [sampling["next_frame_output"]] + [s["output"] for s in card["states"]]
    # A model trained with a silent start hears one silent frame first and then predicts frame
    # 0; one trained without it predicts frame t + 1 from frame t (`proto::sampling`).
    silent = card.get("silent_start", False)
    if silent:
        inputs = np.concatenate([np.zeros_like(frames[:, :1]), frames[:, :-1]], axis=1)
    else:
        inputs = frames
    shift = 0 if silent else 1
    samples = np.zeros_like(frames)
    rng = np.random.default_rng(0)
    for t in range(FRAMES - shift):
        feed = {
            card["frame_input"]: inputs[:, t],
            sampling["uniform_input"]: rng.random(frames[:, t].shape, dtype=np.float32),
            sampling["temperature_input"]: np.ones((pieces, 1), np.float32),
            **states,
        }
        sampled, *next_states = session.run(outputs, feed)
        samples[:, t + shift] = sampled
        states = {s["input"]: v for s, v in zip(card["states"], next_states)}
    return samples, 1 - shift


def main(folders):
    if not folders:
        sys.exit(__doc__)
    for folder in map(pathlib.Path, folders):
        card = json.loads((folder / "model.json").read_text())
        frames, lengths = test_rolls(card["lowest_pitch"], card["pitch_count"])
        samples, first = one_step_samples(folder, card, frames)
        lowest = card["lowest_pitch"]
        sampled = pitch_class_sets(samples, lengths, lowest, first)
        true = pitch_class_sets(frames, lengths, lowest, first)
        apart, by_difference = chords.distance(sampled, true)
        print(f"{folder}: one-step samples land {apart:.3f} from the true test frames")
        for s in by_difference[:SHOWN]:
            print(f"  {chords.name(s):<16} {sampled.get(s, 0):7.1%} (true {true.get(s, 0):.1%})")


if __name__ == "__main__":
    main(sys.argv[1:])
