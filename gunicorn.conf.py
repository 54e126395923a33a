"""Gunicorn settings for Heroku (and any box): every value explained.

Heroku starts `web: gunicorn 'main:create_app()'` from the Procfile; gunicorn
reads this file from the working directory by itself.
"""

import os

from digits import settings


@settings.exit_on_bad_setting()
def env_count(name: str, default: int) -> int:
    """A count from the environment; a malformed one stops gunicorn with one `Error: …` line.
    (A WEB_CONCURRENCY that is not a number at all fails in gunicorn's own import, before this.)"""
    return settings.whole_number(name, os.environ.get(name) or default, minimum=1)


# Heroku tells the dyno which port to listen on; 5000 is the local default.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Heroku sets WEB_CONCURRENCY to suit the dyno's memory. Each worker holds both nets in LiteRT
# (about 70 MB in all), so three fit easily in a 512 MB dyno. One more worker than the two cores
# we plan for: while one waits (a disk flush, an S3 round trip, its GIL), the others keep both
# cores busy. In short runs at 500 predictions/s on 2 cores, p99 was 10-16 ms with 3 workers and
# 26-61 ms with 2; in later one-minute runs the machine's own swings hid any difference.
workers = env_count("WEB_CONCURRENCY", 3)

# Threads let one worker overlap storage I/O (S3 round trips) with predictions,
# which release the GIL inside LiteRT. A call borrows an idle interpreter (digits/model.py).
worker_class = "gthread"
threads = env_count("GUNICORN_THREADS", 4)

# A gthread worker accepts every keep-alive connection it can hold: under load one worker took
# all 32 clients while the other idled. Capping each worker's open connections shares them out.
# Past workers x this many, new connections wait in the listen queue until one closes.
worker_connections = env_count("GUNICORN_WORKER_CONNECTIONS", 16)

# Heroku's router gives up on a request after 30 s; stop a stuck worker before it does.
timeout = 25

# On a restart or deploy, finish requests in flight before exiting (Heroku
# waits 30 s between SIGTERM and SIGKILL).
graceful_timeout = 20

# Heroku's router keeps connections open to the dyno; a short keep-alive is enough.
keepalive = 5

# Each worker loads its own models after the fork: the model watcher is a
# thread, and threads do not survive a fork, so preloading would leave it dead.
preload_app = False

# The app writes one structured log line per request itself, so gunicorn's
# access log would only repeat it. Errors still go to stderr, which Heroku collects.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# Recycle workers now and then, with jitter so they do not all restart together; this bounds
# any slow memory growth. Not too often: a new worker spends about half a second of CPU on its
# imports, and at 500 requests/s a worker would reach 20,000 every 40 s.
max_requests = 100000
max_requests_jitter = 10000

# Heroku's router sets X-Forwarded-For and X-Forwarded-Proto, and a dyno is reached only through
# it (Heroku sets DYNO), so there trust them from any address. Elsewhere anyone could set them,
# so gunicorn's default stands: only from 127.0.0.1 and ::1, or from the addresses in
# FORWARDED_ALLOW_IPS, which gunicorn reads itself (and which also wins on Heroku).
if os.environ.get("DYNO") and "FORWARDED_ALLOW_IPS" not in os.environ:
    forwarded_allow_ips = "*"


def on_starting(server):
    """Check the app's settings in the master, before any worker boots: a malformed one stops
    gunicorn with one line (exit code 1). A worker that failed on it would be started again,
    for ever."""
    from digits.config import check_settings

    check_settings()


def post_worker_init(worker):
    """Load both nets before this worker takes a request, so that a worker recycled under load
    does not make its first callers wait for them. If they cannot load, the worker still starts:
    predictions answer 503 (and /healthz shows no versions) until a request loads them."""
    from digits.serving import ModelsUnavailable

    try:
        worker.wsgi.extensions["models"].recognizer()
    except ModelsUnavailable as e:
        worker.log.error("models not loaded at start: %s", e)
