"""The design card's `Model` (one net served by LiteRT) and the service that keeps the nets current.

They live in `digits/model.py` and `digits/serving.py`, inside the package, so that the package
never imports this entry point; this module names them where the design card says they are.
"""

from digits.model import BadModel, Model, verify_tflite
from digits.serving import (
    ModelService,
    ModelsUnavailable,
    Recognizer,
    load_model,
    service_for,
)

__all__ = [
    "BadModel",
    "Model",
    "ModelService",
    "ModelsUnavailable",
    "Recognizer",
    "load_model",
    "service_for",
    "verify_tflite",
]
