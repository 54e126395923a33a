"""What happens to a POST /api/predict: view → decode → recognise → record → answer.

    digits/api.py `predict`, or digits/fastpath.py for a plain JSON body
      → `drawing`: the PNG and its pixels from imageBase64 (digits/images.py; BadInput: a 400)
      → `recognise`: preprocess to 28x28 (digits/preprocess.py), both nets (digits/serving.py)
      → the record queued for the background writer (digits/predictions.py), with a new id
      → the answer: each net's digit and probabilities, the preview, the versions

Both entry points call these two functions, so they answer alike.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import numpy as np

from digits import predictions, preprocess
from digits.images import decode_drawing
from digits.preprocess import Drawing
from digits.serving import Recognizer
from digits.storage import Storage


def drawing(fields: dict) -> tuple[bytes, Drawing]:
    """The PNG and the decoded drawing of the body's imageBase64; BadInput says what is wrong."""
    return decode_drawing(fields.get("imageBase64"))


def recognise(recognizer: Recognizer, storage: Storage, png: bytes, image: Drawing) -> dict:
    """Run both nets on a drawing, queue its record, and return the /api/predict response."""
    x28 = preprocess.to_mnist(image)
    versions = recognizer.versions()
    outputs = None if x28 is None else recognizer.predict(x28)
    if outputs is not None:
        versions = {net: out.version for net, out in outputs.items()}
    record = predictions.submit(storage, record_fields(versions, outputs, png))
    originals = None if x28 is None else recognizer.predict_original(x28)
    return response(record, outputs, originals, x28, recognizer)


def net_output(probabilities: np.ndarray | None, version: str | None = None) -> dict:
    """{"digit", "probabilities"} as plain JSON numbers (6 decimals); nulls for an empty canvas."""
    if probabilities is None:
        out = {"digit": None, "probabilities": None}
    else:
        rounded = [round(float(p), 6) for p in probabilities]
        out = {"digit": int(np.argmax(probabilities)), "probabilities": rounded}
    return out if version is None else {**out, "version": version}


def record_fields(versions: dict, outputs: dict | None, png: bytes) -> dict:
    """A prediction's record, but for the id that `submit` gives it."""
    record = {"created": datetime.now(UTC).isoformat(), "versions": versions}
    for net in versions:
        probabilities = None if outputs is None else outputs[net].probabilities
        record[net] = net_output(probabilities)
    record["empty"] = outputs is None
    record["image"] = base64.b64encode(png).decode("ascii")
    return record


def response(record: dict, outputs, originals, x28, recognizer) -> dict:
    versions = record["versions"]
    preview = x28 if x28 is not None else np.zeros((28, 28), np.float32)
    body = {"id": record["id"], "empty": record["empty"]}
    body["preview"] = preprocess.preview_data_url(preview)
    for net, version in versions.items():
        body[net] = {**record[net], "version": version}
    original_versions = {net: m.version for net, m in recognizer.original.items()}
    body["versions"] = {
        net: {"current": versions[net], "original": original_versions[net]} for net in versions
    }
    if originals is not None:
        body["original"] = {
            net: net_output(out.probabilities, out.version) for net, out in originals.items()
        }
    return body
