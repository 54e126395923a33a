"""Digits: draw a digit, two nets recognise it, and they learn from your corrections."""

__version__ = "0.1.0"
