"""The nets the app serves, records answers from and trains: their names, in the order shown.

Defined here once; the pages get them from the server (as data attributes), as they get URLs.
"""

NETS = ("fnn", "cnn")
