"""Recognition benchmark: latency, memory, cold start and end-to-end accuracy, beside baselines.

    .venv/bin/python bench/recognition.py                  # 10,000 MNIST test digits
    .venv/bin/python bench/recognition.py --digits 2000    # a shorter run
    .venv/bin/python bench/recognition.py --models-dir /tmp/run1

1. Latency: POST /api/predict called straight into the Flask WSGI app (routing, hooks, JSON,
   base64 + PNG decode + preprocessing + both nets + queueing the record), p50/p99 over
   --requests requests; and the same work without the WSGI layer.
   Baseline: `keras_model.predict(x)` per request and net, in a subprocess.
2. Memory: RSS of a gunicorn worker (gunicorn.conf.py, one worker) after all the accuracy
   requests, vs a process that imports TensorFlow, loads both .keras files and predicts.
3. Cold start: from spawning gunicorn to the first /api/predict answered over HTTP, vs from
   spawning the Keras process to its first prediction.
4. Accuracy: MNIST test digits redrawn as canvases (bench/render.py), POSTed over real HTTP to
   that gunicorn, vs the naive demo preprocessing (resize the canvas to 28x28, invert) through
   the same nets.

Seeded (SEED), so a rerun draws the same canvases. Output: a markdown table on stdout and in
bench/out/recognition.md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.render import naive_input, render  # noqa: E402
from digits import mnist  # noqa: E402
from functions import Model  # noqa: E402

SEED = 20261124
BIN = Path(sys.executable).parent
OUT = ROOT / "bench" / "out" / "recognition.md"
DATA_URL = "data:image/png;base64,"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentiles(times_ms: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(times_ms, [50, 99])
    return float(p50), float(p99)


def body_of(png: bytes) -> bytes:
    import base64

    return json.dumps({"imageBase64": DATA_URL + base64.b64encode(png).decode()}).encode()


def render_all(count: int) -> tuple[list[bytes], np.ndarray, dict[str, np.ndarray]]:
    """`count` MNIST test digits as canvas PNGs, their labels, and how each was drawn."""
    images, labels = mnist.load("test")
    rng = np.random.default_rng(SEED)
    rendered = [render(images[i], rng) for i in range(count)]
    pngs = [png for png, _ in rendered]
    drawn = {key: np.array([info[key] for _, info in rendered]) for key in rendered[0][1]}
    return pngs, labels[:count].astype(int), drawn


# --- 1. latency ------------------------------------------------------------------------------


def bench_app(models_dir: str, storage_dir: str):
    from main import create_app

    config = {"STORAGE_URL": storage_dir, "MODELS_DIR": models_dir, "LOG_REQUESTS": "off"}
    return create_app({**config, "MODEL_WATCH": False})


class Timer:
    """Wall time and process CPU time (all threads, the record writer's too) per request, in ms.

    CPU time shows the cost of a request even when other jobs share the cores; wall time
    does not (it includes waiting for a core).
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def time(self, keep: bool, work, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work(*args, **kwargs)
        if keep:
            self.wall.append((time.perf_counter() - wall) * 1000)
            self.cpu.append((time.process_time() - cpu) * 1000)
        return result


def time_wsgi(app, bodies: list[bytes], requests: int) -> Timer:
    """POST /api/predict straight into the WSGI app: routing, hooks, JSON in and out, no HTTP.

    Each request's environ is built before its clock starts (Flask's test client builds it
    inside the call, which is client work and cost about 0.5 ms).
    """
    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder(
        path="/api/predict", method="POST", content_type="application/json", data=b"{}"
    ).get_environ()
    timer = Timer()
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call(environ: dict) -> bytes:
        return b"".join(app(environ, start_response))

    for i in range(-50, requests):  # 50 warm-up requests, not counted
        body = bodies[i % len(bodies)]
        environ = {**base, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        chunks = timer.time(i >= 0, call, environ)
        assert statuses.pop().startswith("200"), chunks[:200]
    return timer


def time_view_work(app, bodies: list[bytes], requests: int) -> list[float]:
    """What the view does, without Flask's request handling: parse, decode, recognise, queue."""
    from digits import predict

    recognizer = app.extensions["models"].recognizer()
    storage = app.extensions["storage"]

    def work(body: bytes) -> dict:
        png, image = predict.drawing(json.loads(body))
        return predict.recognise(recognizer, storage, png, image)

    timer = Timer()
    for i in range(-50, requests):
        body = bodies[i % len(bodies)]
        timer.time(i >= 0, work, body)
    return timer


def measure_latency(models_dir: str, pngs: list[bytes], requests: int) -> dict:
    from digits import predictions

    bodies = [body_of(png) for png in pngs[:500]]
    with tempfile.TemporaryDirectory() as tmp:
        app = bench_app(models_dir, tmp)
        client = time_wsgi(app, bodies, requests)
        predictions.flush(60)
        view = time_view_work(app, bodies, requests)
        predictions.flush(60)
        dropped = predictions.writer().dropped
    return {
        "client": percentiles(client.wall),
        "client_cpu": percentiles(client.cpu),
        "view": percentiles(view.wall),
        "view_cpu": percentiles(view.cpu),
        "dropped": dropped,
    }


# --- the TensorFlow path, in its own process -------------------------------------------------


def measure_keras(models_dir: str, pngs: list[bytes], requests: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        for i, png in enumerate(pngs[:100]):
            Path(tmp, f"{i:03d}.png").write_bytes(png)
        script = str(ROOT / "bench" / "keras_path.py")
        spawned = time.time()
        result = subprocess.run(
            [sys.executable, script, models_dir, tmp, str(requests)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["cold_s"] = out["first_answer_at"] - spawned
    return out


# --- 2-4. gunicorn: cold start, accuracy over HTTP, memory -----------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(models_dir: str, storage_dir: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "WEB_CONCURRENCY": "1",
        "STORAGE_URL": storage_dir,
        "MODELS_DIR": models_dir,
        "LOG_REQUESTS": "off",
        "LOG_LEVEL": "warning",
    }
    command = [str(BIN / "gunicorn"), "main:create_app()", "--bind", f"127.0.0.1:{port}"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)


def post(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    connection.request("POST", "/api/predict", body=body, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def first_answer(port: int, body: bytes, spawned: float, timeout: float = 30.0) -> float:
    """Seconds from `spawned` until /api/predict answers 200."""
    while time.perf_counter() - spawned < timeout:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status, _ = post(connection, body)
            connection.close()
            if status == 200:
                return time.perf_counter() - spawned
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("gunicorn never answered")


def predict_over_http(port: int, bodies: list[bytes]) -> np.ndarray:
    """The digits (fnn, cnn) the server answers for each body, over one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    answers = np.zeros((len(bodies), 2), dtype=int)
    for i, body in enumerate(bodies):
        status, reply = post(connection, body)
        assert status == 200, reply
        answers[i] = reply["fnn"]["digit"], reply["cnn"]["digit"]
        if i % 2000 == 1999:
            log(f"  {i + 1} predictions over HTTP")
    connection.close()
    return answers


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def measure_server(models_dir: str, pngs: list[bytes]) -> dict:
    bodies = [body_of(png) for png in pngs]
    port = free_port()
    with tempfile.TemporaryDirectory() as storage_dir:
        spawned = time.perf_counter()
        server = start_gunicorn(models_dir, storage_dir, port)
        try:
            cold_s = first_answer(port, bodies[0], spawned)
            answers = predict_over_http(port, bodies)
            rss = rss_mb(worker_pid(server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    return {"cold_s": cold_s, "answers": answers, "rss_mb": rss}


def naive_answers(models_dir: str, pngs: list[bytes]) -> np.ndarray:
    x = np.stack([naive_input(png) for png in pngs])
    answers = []
    for net in ("fnn", "cnn"):
        model = Model(net, "original", Path(models_dir, f"{net}.tflite").read_bytes())
        answers.append(np.concatenate([model.predict(b).argmax(1) for b in np.array_split(x, 20)]))
    return np.stack(answers, axis=1)


# --- the table -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def latency_rows(lat: dict, keras: dict, requests: int) -> list[list[str]]:
    rows = []
    for key, what in (("client", "whole Flask app (WSGI call)"), ("view", "view work, no WSGI")):
        (p50, p99), (cpu50, cpu99) = lat[key], lat[f"{key}_cpu"]
        speedup, cpu_speedup = keras["p50_ms"] / p50, keras["cpu_p50_ms"] / cpu50
        ok = p50 <= 1.0 and p99 <= 3.0 and speedup >= 100
        rows.append(
            [
                f"Predict both nets incl. base64+PNG+preprocess, {what} ({requests} req)",
                f"wall p50 {p50:.3f} ms, p99 {p99:.3f} ms; CPU p50 {cpu50:.3f} ms, "
                f"p99 {cpu99:.3f} ms",
                f"Keras `model.predict` per request: wall p50 {keras['p50_ms']:.1f} ms, "
                f"p99 {keras['p99_ms']:.1f} ms; CPU p50 {keras['cpu_p50_ms']:.1f} ms",
                f"{speedup:.0f}x faster (CPU: {cpu_speedup:.0f}x); target p50 <= 1 ms, "
                f"p99 <= 3 ms, >= 100x: {verdict(ok)}",
            ]
        )
    return rows


def resource_rows(server: dict, keras: dict, count: int) -> list[list[str]]:
    return [
        [
            f"Memory: RSS of the gunicorn worker after {count} predictions",
            f"{server['rss_mb']:.0f} MB",
            f"TF process, both .keras loaded, predicting: {keras['rss_mb']:.0f} MB",
            f"{keras['rss_mb'] / server['rss_mb']:.1f}x less; target <= 150 MB: "
            f"{verdict(server['rss_mb'] <= 150)}",
        ],
        [
            "Cold start: process spawn to first prediction answered",
            f"{server['cold_s']:.2f} s (gunicorn, over HTTP)",
            f"TF process (import, load, predict): {keras['cold_s']:.2f} s",
            f"target <= 2 s: {verdict(server['cold_s'] <= 2.0)}",
        ],
    ]


def accuracy_rows(answers, naive, labels, drawn: dict) -> list[list[str]]:
    rows = []
    n = len(labels)
    transparent = drawn["transparent"]
    for col, net, target in ((1, "CNN", 0.99), (0, "FNN", 0.975)):
        right = answers[:, col] == labels
        acc, naive_acc = right.mean(), (naive[:, col] == labels).mean()
        on_white, on_clear = right[~transparent].mean(), right[transparent].mean()
        rows.append(
            [
                f"Accuracy {net}: {n} MNIST test digits drawn as canvases, over HTTP",
                f"{acc:.2%} (white {on_white:.2%}, transparent {on_clear:.2%})",
                f"naive resize-to-28x28 preprocessing, same net: {naive_acc:.2%}",
                f"target >= {target:.1%}: {verdict(acc >= target)}",
            ]
        )
    return rows + [breakdown_row(answers, labels, drawn)]


def breakdown_row(answers, labels, drawn: dict) -> list[str]:
    """Where the errors are: by drawn size and by stroke thickness (CNN / FNN)."""

    def acc(mask: np.ndarray) -> str:
        right = answers[mask] == labels[mask, None]
        return f"{right[:, 1].mean():.2%} / {right[:, 0].mean():.2%} (n={mask.sum()})"

    size, stroke = drawn["size"], drawn["stroke_px_added"]
    parts = [
        f"size 40-69 px: {acc(size < 70)}",
        f"size 70-180 px: {acc(size >= 70)}",
        f"strokes +6/+8 px: {acc(stroke >= 6)}",
        f"strokes -2..+4 px: {acc(stroke < 6)}",
        f"size < 70 and +6/+8 px: {acc((size < 70) & (stroke >= 6))}",
    ]
    return ["Accuracy CNN / FNN by how the digit was drawn", "; ".join(parts), "", ""]


def table(rows: list[list[str]]) -> str:
    lines = ["| Measure | Digits (LiteRT) | Baseline | Result |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", default=str(ROOT / "models"))
    parser.add_argument("--digits", type=int, default=10000, help="MNIST test digits to draw")
    parser.add_argument("--requests", type=int, default=2000, help="latency requests")
    parser.add_argument("--keras-requests", type=int, default=200)
    args = parser.parse_args()
    models_dir = str(Path(args.models_dir).resolve())
    load_before = os.getloadavg()[0]
    log(f"rendering {args.digits} MNIST test digits as canvases (seed {SEED})")
    pngs, labels, drawn = render_all(args.digits)
    log("latency in-process")
    lat = measure_latency(models_dir, pngs, args.requests)
    log("the Keras path in a subprocess")
    keras = measure_keras(models_dir, pngs, args.keras_requests)
    log("gunicorn: cold start, accuracy over HTTP, memory")
    server = measure_server(models_dir, pngs)
    naive = naive_answers(models_dir, pngs)
    rows = latency_rows(lat, keras, args.requests)
    rows += resource_rows(server, keras, args.digits)
    rows += accuracy_rows(server["answers"], naive, labels, drawn)
    text = table(rows)
    notes = (
        f"\n\nModels: {models_dir}. Machine: {os.cpu_count()} cores, load average "
        f"{load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (other jobs "
        "share the cores: wall times include waiting for one). Request logging off. "
        f"Keras baseline over {args.keras_requests} requests. "
        f"Prediction records dropped by the full queue during the latency runs: {lat['dropped']}."
    )
    print(text + notes)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + notes + "\n")


if __name__ == "__main__":
    main()
