#!/usr/bin/env python3
"""Generate a piece from a pianoroll step model served by Triton Inference Server.

`trainer export --triton DIR` writes a Triton model repository whose model takes one frame at
a time: Triton's sequence batcher keeps each sequence's recurrent state on the server, and the
client runs the loop. Each step the client sends

    frame        FP32 [1, 88]  the previous frame (1 where a key sounds; silence to begin)
    uniform      FP32 [1, 88]  one uniform number in [0, 1) per key, drawn by the client
    temperature  FP32 [1, 1]   the sampling temperature

with the sequence's id, `sequence_start` on its first step and `sequence_end` on its last, and
reads `next_frame` FP32 [1, 88]: key k sounds when uniform[k] is below the model's probability
for it. The client's uniforms are the randomness, so a seed fixes the piece (numpy's generator
here: the same seed gives the same piece on every run, though not the same piece as pianoroll's
own server, which draws its uniforms with ChaCha8).

    pip install "tritonclient[grpc]" mido numpy
    python step_loop.py --url 127.0.0.1:8001 --model lstm-nade --frames 64 --seed 7 --out piece.mid
"""

import argparse
import sys

import numpy as np

KEYS = 88
LOWEST_PITCH = 21  # MIDI note of key 0 (A0)


def generate(step, frames, seed, temperature=1.0, primer=(), silent_start=False):
    """The step loop: `frames` new frames after `primer` (a list of 88-element 0/1 rows).

    `step(frame, uniform, temperature, start, end)` runs the model once on one sequence and
    returns its `next_frame`. The primer's frames are fed first (their sampled successors are
    discarded: the primer itself is the continuation), then each sampled frame is fed back.
    Without a primer the loop starts from a silent frame; a model trained with a silent start
    (model.json: `silent_start`) is fed that silent frame before a primer too.
    """
    if frames < 1:
        raise ValueError(f"frames: must be at least 1, got {frames}")
    rng = np.random.default_rng(seed)
    feed = [np.asarray(f, dtype=np.float32) for f in primer]
    if silent_start or not feed:
        feed.insert(0, np.zeros(KEYS, np.float32))
    total_steps = len(feed) - 1 + frames
    generated = []
    frame = feed[0]
    for t in range(total_steps):
        uniform = rng.random(KEYS, dtype=np.float32)
        next_frame = step(frame, uniform, temperature, start=t == 0, end=t == total_steps - 1)
        if t + 1 < len(feed):
            frame = feed[t + 1]
        else:
            frame = np.asarray(next_frame, dtype=np.float32).reshape(KEYS)
            generated.append(frame)
    return np.stack(generated)


def triton_step(client, model, sequence_id):
    """A `step` over Triton's gRPC API, for `generate`."""
    import tritonclient.grpc as triton

    def step(frame, uniform, temperature, start, end):
        inputs = []
        for name, value in [
            ("frame", frame.reshape(1, KEYS)),
            ("uniform", uniform.reshape(1, KEYS)),
            ("temperature", np.full((1, 1), temperature, np.float32)),
        ]:
            tensor = triton.InferInput(name, list(value.shape), "FP32")
            tensor.set_data_from_numpy(value.astype(np.float32))
            inputs.append(tensor)
        result = client.infer(
            model,
            inputs,
            outputs=[triton.InferRequestedOutput("next_frame")],
            sequence_id=sequence_id,
            sequence_start=start,
            sequence_end=end,
        )
        return result.as_numpy("next_frame")[0]

    return step


def write_midi(roll, path, frames_per_beat=2, tempo_bpm=120.0, velocity=80):
    """The roll as a one-track MIDI file: a note per run of frames a key sounds in."""
    import mido

    ticks_per_beat = 480
    ticks_per_frame = ticks_per_beat // frames_per_beat
    events = []  # (tick, order, message): note-offs before note-ons at the same tick
    previous = np.zeros(KEYS, dtype=bool)
    for t, frame in enumerate(np.vstack([roll, np.zeros((1, KEYS))]).astype(bool)):
        for key in np.flatnonzero(previous & ~frame):
            events.append((t * ticks_per_frame, 0, mido.Message("note_off", note=LOWEST_PITCH + int(key))))
        for key in np.flatnonzero(frame & ~previous):
            events.append((t * ticks_per_frame, 1, mido.Message("note_on", note=LOWEST_PITCH + int(key), velocity=velocity)))
        previous = frame
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm))])
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1], e[2].note)):
        track.append(message.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    midi.save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton's gRPC address")
    parser.add_argument("--model", required=True, help="the model's name in the repository")
    parser.add_argument("--frames", type=int, default=64, help="frames to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the client's uniforms")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--sequence-id", type=int, default=1, help="Triton's sequence id (unique among running sequences)")
    parser.add_argument("--frames-per-beat", type=int, default=2, help="the model's grid (model.json: roll_settings.grid)")
    parser.add_argument("--out", required=True, help="the MIDI file to write")
    args = parser.parse_args(argv)

    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(url=args.url)
    step = triton_step(client, args.model, args.sequence_id)
    roll = generate(step, args.frames, args.seed, args.temperature)
    write_midi(roll, args.out, frames_per_beat=args.frames_per_beat)
    print(f"{args.out}: {len(roll)} frames, {int(roll.sum())} key-frames sounding", file=sys.stderr)


if __name__ == "__main__":
    main()
