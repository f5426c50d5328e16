"""How often pieces open in minor, and stay there: for samples against the data they model.

For each folder of MIDI files (samples the server wrote: C major's key, 120 bpm, so one frame is
0.25 s) or dataset split (`out/nottingham/train.arrow`), prints how many pieces sound E flat in
their first 8 frames (an opening in C minor: the pieces are in C, major or minor) and how many
of those end up major overall (more frames with E than with E flat), and how many pieces are
minor overall. The README's "A silent start" quotes it; run it with the project's Python:
    .venv/bin/python scripts/minor-openings.py out/nottingham/train.arrow SAMPLES_FOLDER...
"""

import collections
import glob
import sys

import mido
import pyarrow.ipc as ipc

E_FLAT, E = 3, 4
OPENING_FRAMES = 8
FRAME_SECONDS = 0.25


def midi_frames(path):
    """The pitch classes sounding in each 0.25 s frame of a MIDI file (sampled mid-frame)."""
    now, started, notes = 0.0, {}, []
    for message in mido.MidiFile(path):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            started[message.note] = now
        elif message.type in ("note_off", "note_on") and message.note in started:
            notes.append((message.note, started.pop(message.note), now))
    end = max((stop for _, _, stop in notes), default=0.0)
    frames = []
    for i in range(int(end / FRAME_SECONDS + 0.5)):
        middle = (i + 0.5) * FRAME_SECONDS
        frames.append({pitch % 12 for pitch, start, stop in notes if start <= middle < stop})
    return frames


def split_frames(path):
    """The pitch classes of each frame of each piece of a dataset split (MIDI pitches)."""
    table = ipc.open_file(path).read_all().to_pydict()
    return [[{pitch % 12 for pitch in frame} for frame in roll] for roll in table["roll"]]


def minor(frames):
    counts = collections.Counter(pc for frame in frames for pc in frame)
    return counts[E_FLAT] > counts[E]


def main(paths):
    for path in paths:
        if path.endswith(".arrow"):
            pieces = split_frames(path)
        else:
            pieces = [midi_frames(f) for f in sorted(glob.glob(path + "/*.mid"))]
        if not pieces:
            sys.exit(f"{path}: no pieces")
        opens_minor = [p for p in pieces if any(E_FLAT in f for f in p[:OPENING_FRAMES])]
        drift = sum(1 for p in opens_minor if not minor(p))
        overall = sum(1 for p in pieces if minor(p))
        print(
            f"{path}: {len(pieces)} pieces; open in minor {len(opens_minor)} "
            f"({100 * len(opens_minor) / len(pieces):.1f}%), of which end major {drift}; "
            f"minor overall {overall} ({100 * overall / len(pieces):.1f}%)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
