"""The usual Keras demo pattern, for bench/recognition.py, in its own process (it imports TF).

    python bench/keras_path.py MODELS_DIR PNG_DIR REQUESTS

Per request: decode the PNG, preprocess with the same `to_mnist`, then `keras_model.predict(x)`
for each net. Prints one JSON line: when the first prediction was answered (epoch seconds, for
the cold start), p50/p99 per request, and the RSS after.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(models_dir: str, png_dir: str, requests: int) -> None:
    import keras
    import numpy as np

    from digits.images import open_png
    from digits.preprocess import to_mnist

    nets = {net: keras.models.load_model(f"{models_dir}/{net}.keras") for net in ("fnn", "cnn")}
    pngs = [p.read_bytes() for p in sorted(Path(png_dir).glob("*.png"))]

    def answer(png: bytes) -> list[int]:
        x = to_mnist(open_png(png))[None, ..., None]
        return [int(np.argmax(model.predict(x, verbose=0))) for model in nets.values()]

    answer(pngs[0])
    first_answer_at = time.time()
    times, cpu = [], []
    for i in range(requests):
        start, cpu_start = time.perf_counter(), time.process_time()
        answer(pngs[i % len(pngs)])
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - cpu_start) * 1000)
    p50, p99 = np.percentile(times, [50, 99])
    result = {
        "first_answer_at": first_answer_at,
        "p50_ms": p50,
        "p99_ms": p99,
        "cpu_p50_ms": float(np.percentile(cpu, 50)),
        "rss_mb": rss_mb(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
