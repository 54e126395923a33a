"""Gunicorn settings for Heroku (and any box): every value explained.

Heroku starts `web: gunicorn 'main:create_app()'` from the Procfile; gunicorn
reads this file from the working directory by itself. Heroku's Python buildpack also exports,
at every dyno boot, WEB_CONCURRENCY (when unset), GUNICORN_CMD_ARGS='--access-logfile -' and
FORWARDED_ALLOW_IPS='*'. Gunicorn applies GUNICORN_CMD_ARGS after this file, so a value set
here for one of those options would lose: the settings below are written with that in mind.
"""

import os

from gunicorn.glogging import Logger

from digits import settings


@settings.exit_on_bad_setting()
def env_count(name: str, default: int) -> int:
    """A count from the environment; a malformed one stops gunicorn with one `Error: …` line.
    (A WEB_CONCURRENCY that is not a number at all fails in gunicorn's own import, before this.)"""
    return settings.whole_number(name, os.environ.get(name) or default, minimum=1)


# Heroku tells the dyno which port to listen on; 5000 is the local default.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Heroku's buildpack sets WEB_CONCURRENCY when it is unset: 2 on a standard-1x dyno (512 MB),
# 4 on a standard-2x. The default here is the same 2, so a local run (and bench/load.py) serves
# as a standard-1x dyno does. After 200 predictions a worker had 65 MB of RSS (29 MB of it
# shared files) and the master 36 MB: about 165 MB of the 512 MB. Paired runs found no CPU
# difference a request between 2 and 3 workers (bench/README.md).
workers = env_count("WEB_CONCURRENCY", 2)

# Threads let one worker overlap storage I/O (S3 round trips) with predictions,
# which release the GIL inside LiteRT. A call borrows an idle interpreter (digits/model.py).
worker_class = "gthread"
threads = env_count("GUNICORN_THREADS", 4)

# How long a thread may hold the GIL while another waits for it, in milliseconds (Python's
# default is 5). A prediction gives the GIL back and takes it again several times (LiteRT runs
# without it); while other threads of the worker serve public reads, each time back can cost a
# whole interval. bench/burst.py, 16 clients reading without pause, on 2 shared cores: the
# predictions' p99 was 87-108 ms at 1 ms and 143-147 ms at 5 (bench/README.md, "Burst").
switch_interval_ms = env_count("GIL_SWITCH_MS", 1)

# Connections one worker holds at once, idle keep-alive ones included; past it the worker
# accepts nothing until one closes. Heroku's router keeps its idle connections to a dyno for up
# to 90 s and reuses them, and opens new ones in a burst. The cap shares connections out: without
# it one gthread worker took all 32 of the load bench's clients while the other idled. Idle ones
# never take the last `threads` places: see `pre_request` below.
worker_connections = env_count("GUNICORN_WORKER_CONNECTIONS", 16)

# Not a request timeout. For gthread workers it is a heartbeat: the worker's main loop reports
# about once a second whatever its threads are doing, and the master restarts a worker whose loop
# has been silent this long (hung in C code holding the GIL, say); it never stops a slow request.
# What bounds a request is what it waits on: each S3 call gives up within about 10 s (botocore's
# 2 s connect and 3 s read timeouts, two tries: digits/storage.py), and Heroku's router answers
# H12 itself after 30 s.
timeout = 25

# On a restart or deploy, finish requests in flight before exiting (Heroku
# waits 30 s between SIGTERM and SIGKILL).
graceful_timeout = 20

# Seconds an idle keep-alive connection stays open. Heroku's router (Router 2.0) keeps idle
# connections to a dyno for up to 90 s and reuses them: a server that closes one first races the
# router's next request on it, which then fails as H13/H18. So longer than 90 s, as Heroku's own
# python-getting-started (95). Idle connections cost a socket each and no thread.
keepalive = 95

# Each worker loads its own models after the fork: the model watcher is a
# thread, and threads do not survive a fork, so preloading would leave it dead.
preload_app = False


class RequestLogFromTheApp(Logger):
    """Gunicorn's logger without its access log. The app writes one JSON line per request
    itself (LOG_REQUESTS, digits/logs.py), so gunicorn's line would repeat it. `accesslog = None`
    alone is not enough: the buildpack's GUNICORN_CMD_ARGS='--access-logfile -' is applied
    after this file and would turn it back on, two lines per request that LOG_REQUESTS=off
    could not silence. Errors still go to stderr, which Heroku collects."""

    access_log_enabled = False  # protocol handlers skip building a log entry

    def access(self, resp, req, environ, request_time) -> None:
        return None


logger_class = RequestLogFromTheApp
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# Recycle workers now and then, with jitter so they do not all restart together; this bounds
# any slow memory growth. Not too often: a new worker spends about half a second of CPU on its
# imports, and at 500 requests/s a worker would reach 20,000 every 40 s.
max_requests = 100000
max_requests_jitter = 10000

# Whose X-Forwarded-Proto (the scheme) gunicorn believes. Heroku's router sets it, and a dyno is
# reached only through the router, so there any address may be trusted. On Heroku this is moot:
# the buildpack exports FORWARDED_ALLOW_IPS='*' at every dyno boot, overwriting a config var of
# that name, and gunicorn reads that variable itself; so on Heroku a value of one's own cannot
# take effect. The DYNO case covers a Heroku dyno without that buildpack. Elsewhere anyone could
# set the header, so gunicorn's default stands: only 127.0.0.1 and ::1, or FORWARDED_ALLOW_IPS.
if os.environ.get("DYNO") and "FORWARDED_ALLOW_IPS" not in os.environ:
    forwarded_allow_ips = "*"


def on_starting(server):
    """Check the app's settings in the master, before any worker boots: a malformed one stops
    gunicorn with one line (exit code 1). A worker that failed on it would be started again,
    for ever."""
    from digits.config import check_settings

    check_settings()


def pre_request(worker, req):
    """Answer with "Connection: close" once this worker holds worker_connections - threads
    connections, so idle keep-alive ones never fill it. gthread's own check of that bound counts
    only the connections already idle, not those in flight: after a burst of 64 connections held
    open (tests/test_deploy.py) each worker kept all 16 of its own, stopped accepting, and new
    connections waited in the listen queue until an idle one timed out, 95 s later; the router
    would answer those requests with H12 or H13 meanwhile. Counted here, in flight included,
    `threads` places stay free for new connections whatever the router holds."""
    if worker.nr_conns >= worker.cfg.worker_connections - worker.cfg.threads:
        req.force_close()


def post_worker_init(worker):
    """Set the GIL's switch interval, and load both nets before this worker takes a request, so
    that a worker recycled under load does not make its first callers wait for them. If they
    cannot load, the worker still starts: predictions answer 503 (and /healthz shows no
    versions) until a request loads them."""
    import sys

    from digits.serving import ModelsUnavailable

    sys.setswitchinterval(switch_interval_ms / 1000)
    try:
        worker.wsgi.extensions["models"].recognizer()
    except ModelsUnavailable as e:
        worker.log.error("models not loaded at start: %s", e)
