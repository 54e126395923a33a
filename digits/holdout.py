"""Which drawings are held out from training: a fixed share, by a hash of the drawing's id.

Light on purpose (no TensorFlow): the web process marks each feedback row held out or not, and
the trainer and `flask train` agree with it.
"""

from __future__ import annotations

import hashlib

from digits import dataset

HELD_OUT_FRACTION = 0.1


def is_held_out(key: str, fraction: float = HELD_OUT_FRACTION) -> bool:
    """True for a fixed `fraction` of drawings, by a hash of the drawing's id.

    The id is the name without its label prefix (`3_<stamp>_<hex>` -> `<stamp>_<hex>`), so
    relabelling never moves a drawing between the sets, and a drawing that came with feedback
    hashes like its prediction (`dataset.sample_id`), as the trainer sees it.
    """
    name = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    label, _, rest = name.partition("_")
    ident = rest if rest and label in dataset.LABELS else name
    digest = hashlib.sha256(ident.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def feedback_held_out(prediction_id: str) -> bool:
    """Whether the drawing of this prediction's feedback is held out (the trainer's rule)."""
    return is_held_out(dataset.sample_id(prediction_id))
