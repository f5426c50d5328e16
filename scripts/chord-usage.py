"""Which chords samples over- and under-use, and in how many pieces, against the data.

The pitch-class-set distance (`pipeline stats --music`) says how far samples land from a split,
not where the difference lies. For the first path (the reference, e.g. the test split) and
each further path (folders of samples the server wrote, or splits), this prints the pitch-class
sets whose share of sounding frames differs most from the reference's, with the share of
pieces that sound each at least once in their first 256 frames (as long as a sample): a chord
that a few pieces use often differs from one that every piece plays now and then. Run it with
the project's Python:
    .venv/bin/python scripts/chord-usage.py [--bootstrap N] out/nottingham/test.arrow SAMPLES_FOLDER...
With --bootstrap N it also prints how much each distance moves with the pieces drawn: the
standard deviation of the distance over N resamples of the pieces (with replacement, seed 0).
The readers are those of scripts/minor-openings.py (same frames, same pitch classes).
"""

import collections
import glob
import importlib.util
import pathlib
import random
import statistics
import sys

_spec = importlib.util.spec_from_file_location(
    "minor_openings", pathlib.Path(__file__).with_name("minor-openings.py")
)
readers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readers)

NAMES = "C C# D Eb E F F# G Ab A Bb B".split()
PIECE_FRAMES = 256
SHOWN = 8


def pieces_of(path):
    if path.endswith(".arrow"):
        return readers.split_frames(path)
    return [readers.midi_frames(f) for f in sorted(glob.glob(path + "/*.mid"))]


def usage(pieces):
    """Each pitch-class set's share of sounding frames, and the share of pieces that sound it."""
    frames = collections.Counter(frozenset(f) for p in pieces for f in p if f)
    sounding = sum(frames.values())
    pieces_with = collections.Counter(
        s for p in pieces for s in {frozenset(f) for f in p[:PIECE_FRAMES] if f}
    )
    return (
        {s: n / sounding for s, n in frames.items()},
        {s: n / len(pieces) for s, n in pieces_with.items()},
    )


def name(pitch_classes):
    return "{" + " ".join(NAMES[pc] for pc in sorted(pitch_classes)) + "}"


def distance(shares, reference):
    """The total-variation distance between two pitch-class-set distributions (shares of
    sounding frames), as `pipeline stats --music` computes it, and the sets ordered by how much
    their shares differ."""
    sets = set(shares) | set(reference)
    gap = {s: abs(shares.get(s, 0) - reference.get(s, 0)) for s in sets}
    return 0.5 * sum(gap.values()), sorted(sets, key=lambda s: -gap[s])


def bootstrap_spread(pieces, ref_frames, resamples):
    """The standard deviation of the distance over resamples of the pieces (drawn with
    replacement; the reference stays whole)."""
    counts = [collections.Counter(frozenset(f) for f in p if f) for p in pieces]
    rng = random.Random(0)
    distances = []
    for _ in range(resamples):
        drawn = sum((rng.choice(counts) for _ in counts), collections.Counter())
        sounding = sum(drawn.values())
        shares = {s: n / sounding for s, n in drawn.items()}
        distances.append(distance(shares, ref_frames)[0])
    return statistics.stdev(distances)


def main(args):
    resamples = 0
    if args[:1] == ["--bootstrap"]:
        try:
            resamples = int(args[1])
        except (IndexError, ValueError):
            resamples = 0
        if resamples < 2:
            sys.exit("--bootstrap needs a count of resamples, at least 2")
        args = args[2:]
    paths = args
    if len(paths) < 2:
        sys.exit(__doc__)
    reference = pieces_of(paths[0])
    ref_frames, ref_pieces = usage(reference)
    for path in paths[1:]:
        pieces = pieces_of(path)
        if not pieces:
            sys.exit(f"{path}: no pieces")
        frames, with_it = usage(pieces)
        apart, by_difference = distance(frames, ref_frames)
        spread = ""
        if resamples:
            sd = bootstrap_spread(pieces, ref_frames, resamples)
            spread = f" (standard deviation {sd:.3f} over {resamples} resamples)"
        print(f"{path}: {len(pieces)} pieces, distance {apart:.3f} from {paths[0]}{spread}")
        print(f"  {'pitch classes':<16} {'frames':>7} {'ref':>7} {'pieces':>7} {'ref':>7}")
        for s in by_difference[:SHOWN]:
            print(
                f"  {name(s):<16} {frames.get(s, 0):7.1%} {ref_frames.get(s, 0):7.1%}"
                f" {with_it.get(s, 0):7.1%} {ref_pieces.get(s, 0):7.1%}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
