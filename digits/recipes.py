"""The two nets as Keras 3 recipes (in the style of keras.io's "Simple MNIST convnet")."""

from __future__ import annotations

import keras
from keras import layers

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def build_fnn() -> keras.Model:
    """Dense layers only: 784-512-256-10 with dropout."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="fnn",
    )


def _conv_block(filters: int, kernel: int = 3, strides: int = 1) -> list[layers.Layer]:
    # No bias before BatchNorm: its shift makes the bias redundant.
    return [
        layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
    ]


def build_cnn() -> keras.Model:
    """A compact convnet with BatchNorm, about 243k parameters.

    The first convolution has stride 2: full-resolution 28x28 feature maps cost half the
    training time on 2 CPU cores (measured) for no visible gain on MNIST.
    """
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            *_conv_block(32, 5, strides=2),
            *_conv_block(64),
            layers.MaxPooling2D(2),
            *_conv_block(128),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="cnn",
    )


RECIPES = {"fnn": build_fnn, "cnn": build_cnn}
