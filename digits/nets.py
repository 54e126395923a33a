"""The nets the app serves, records answers from and trains: their names, in the order shown.

Defined here once; the pages get them from the server (in data-* attributes), as they get URLs.
"""

NETS = ("fnn", "cnn")
# How the pages name each net, and what kind of net it is.
TITLES = {"fnn": "FNN", "cnn": "CNN"}
KINDS = {"fnn": "fully connected", "cnn": "convolutional"}
