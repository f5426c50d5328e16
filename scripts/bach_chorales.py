"""Bach's four-part chorales from music21's corpus (PyPI `music21`), written as MIDI files in
train/valid/test folders that `pipeline build` reads: a second corpus for issue 26's
`--recipe auto`, like the JSB Chorales benchmark of Boulanger-Lewandowski et al. (2012), whose
own split is not in any package.

Usage: python bach_chorales.py OUT_FOLDER (scripts/bach-chorales.sh writes into a staging
folder and renames it when whole).

Every score of the corpus's `bach` composer in MusicXML with exactly four parts (the chorales
with instrumental parts are left out), sorted by file name; file i goes to valid when
i % 5 == 1, to test when i % 5 == 3, else to train (60/20/20, about JSB's 229/76/77 shares).
"""

import sys
from pathlib import Path

from music21 import corpus


def main() -> None:
    out = Path(sys.argv[1])
    paths = sorted(
        (p for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml"))),
        key=lambda p: Path(str(p)).name,
    )
    kept = skipped = 0
    for index, path in enumerate(paths):
        score = corpus.parse(path)
        if len(score.parts) != 4:
            skipped += 1
            continue
        split = {1: "valid", 3: "test"}.get(index % 5, "train")
        target = out / split / (Path(str(path)).name.rsplit(".", 1)[0] + ".mid")
        target.parent.mkdir(parents=True, exist_ok=True)
        score.write("midi", fp=str(target))
        kept += 1
    print(f"{kept} four-part chorales written to {out}, {skipped} scores of other sizes left out")


if __name__ == "__main__":
    main()
