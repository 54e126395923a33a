"""Real handwriting: the nets shipped before real handwriting came in vs the nets in models/.

    .venv/bin/python bench/real.py                     # models/ vs the nets shipped at OLD_COMMIT
    .venv/bin/python bench/real.py --models-dir /tmp/run1

Both pairs of .tflite files run through LiteRT as served (the old ones read from git into
memory), on the same inputs in the same run:
- the held-out pendigits writers (never trained on), drawn by `digits/strokes.py` with fixed
  pens, through `to_mnist`: per net and per digit;
- UJIpenchars2's 60 writers (kept out of the shipped nets' training), drawn the same way;
- MNIST test through `to_mnist`.

Output: a markdown table on stdout and in bench/out/real.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits import mnist, strokes  # noqa: E402
from digits.model import Model  # noqa: E402

# The last commit whose models were trained on MNIST alone (before issue 17).
OLD_COMMIT = "a7f518d"
NETS = ("cnn", "fnn")
UJI_SEED = 18
OUT = ROOT / "bench" / "out" / "real.md"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def old_model(net: str) -> Model:
    """A net as shipped at OLD_COMMIT, read from git into memory."""
    tflite = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:models/{net}.tflite"],
        capture_output=True,
        check=True,
    ).stdout
    return Model(net, OLD_COMMIT, tflite)


def guesses(model: Model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.predict(part).argmax(axis=1) for part in np.array_split(x, 50)])


def test_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    start = time.perf_counter()
    sets = {"held-out pendigits writers": strokes.held_out_inputs()}
    uji = strokes.load("uji")
    sets["UJIpenchars2 (60 writers)"] = strokes.to_inputs(uji, np.random.default_rng(UJI_SEED))
    images, labels = mnist.load("test")
    sets["MNIST test"] = mnist.normalise(images), labels
    log(f"inputs drawn and normalised in {time.perf_counter() - start:.0f} s")
    return sets


def percent(hits: np.ndarray) -> str:
    return f"{100 * hits.mean():.2f}%" if len(hits) else "-"


def table(models: dict[str, Model], sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    names = list(models)
    lines = [
        "| set | digits | " + " | ".join(names) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    for set_name, (x, y) in sets.items():
        right = {name: guesses(model, x) == y for name, model in models.items()}
        cells = " | ".join(f"**{percent(right[n])}**" for n in names)
        lines.append(f"| {set_name} | {len(y)} | {cells} |")
        if set_name.startswith("held-out"):
            for d in range(10):
                cells = " | ".join(percent(right[n][y == d]) for n in names)
                lines.append(f"| &nbsp;&nbsp;digit {d} | {int((y == d).sum())} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    models = {}
    for net in NETS:
        models[f"{net.upper()} {OLD_COMMIT} (MNIST only)"] = old_model(net)
        new = (args.models_dir / f"{net}.tflite").read_bytes()
        models[f"{net.upper()} {args.models_dir.name}/"] = Model(net, "new", new)
    _, held = strokes.split_by_writer(strokes.load("pendigits"))
    writers = ", ".join(sorted(set(held.writers)))
    text = "\n".join(
        [
            "# Real handwriting, as served (int8 LiteRT)",
            "",
            f"Held-out writers ({writers}), each digit drawn {strokes.HELD_OUT_RENDERINGS} times"
            " with fixed random pens (`digits/strokes.py`).",
            "",
            table(models, test_sets()),
            "",
        ]
    )
    print(text)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
