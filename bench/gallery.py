"""Gallery pages bench: what one `/api/dataset` page costs the database, page 1 to the last.

    .venv/bin/python bench/gallery.py                         # 50k drawings, both databases
    .venv/bin/python bench/gallery.py --drawings 50000,100000 --databases postgresql --explain

Each database gets the drawings' index rows alone (the gallery reads nothing else; names as
digits/dataset.py makes them, labels in turn, one in a hundred deleted), then `VACUUM ANALYZE`
as bench/volume.py runs it after a fill (twice: `fill` says why). In-process, on one
connection, the median of --runs calls (ms, before and now taking turns) of:
- before: the page as records.gallery_page read it up to 2026-12-08 (OFFSET over the index
  from the newest entry), copied below;
- now: gallery.gallery_page with its anchors already taken (what every call but one a minute
  per label and process costs);
- the anchors' pass itself (gallery.anchors_of): what the first deep page of a label pays,
  once a minute per process.
Pages: the first, the middle and the last, of all the drawings and of one label. `--explain`
prints each database's plans of a page's queries and of the anchors' pass. The table goes to
stdout.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench.volume import analyze  # noqa: E402
from digits import db, gallery, rebuild, records  # noqa: E402
from digits.dataset import LABELS  # noqa: E402

PER_PAGE = 48  # the gallery page's own


def index_rows(count: int) -> list[dict]:
    """`count` drawings' index rows, one a second, labels in turn, one in a hundred deleted."""
    rng, start = random.Random(0), datetime(2026, 10, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        stamp = (start + timedelta(seconds=i)).strftime("%Y%m%dT%H%M%S%f")
        name = f"{LABELS[i % len(LABELS)]}_{stamp}_{rng.randbytes(6).hex()}"
        meta = {"name": name, "label": LABELS[i % len(LABELS)], "source": "collect"}
        rows.append(records.drawing_row(meta) | {"deleted": i % 100 == 7})
    return rows


def fill(engine, count: int) -> None:
    """The rows, then the statistics and visibility map a live database has from autovacuum
    (`analyze` runs VACUUM twice: see why there)."""
    with db.writing(engine) as conn:
        rebuild.insert_all(conn, db.drawings, index_rows(count))
        records.recount(conn)
    analyze(engine)


def offset_page(conn, label: str | None, page: int, per_page: int) -> tuple[list[dict], int]:
    """The page as it was read before the anchors (records.gallery_page at d6e04a4)."""
    d = db.drawings
    shown = [d.c.deleted.is_(False)] + ([d.c.label == label] if label else [])
    names = (
        sa.select(d.c.name)
        .where(*shown)
        .order_by(d.c.sort_key.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
        .subquery()
    )
    rows = conn.execute(
        sa.select(d.c.name, d.c.label, d.c.created, d.c.source)
        .join_from(d, names, d.c.name == names.c.name)
        .order_by(d.c.sort_key.desc())
    ).all()
    tally = records.counts(conn)
    total = tally[label] if label else sum(tally.values())
    return [row._asdict() for row in rows], total


def median_ms(call, runs: int) -> float:
    return paired_ms([call], runs)[0]


def paired_ms(calls: list, runs: int) -> list[float]:
    """Each call's median (ms) of `runs`, the calls taking turns: on a shared machine a drift
    in load then weighs on each alike."""
    times = [[] for _ in calls]
    for _ in range(runs):
        for call, taken in zip(calls, times, strict=True):
            started = time.perf_counter()
            call()
            taken.append(time.perf_counter() - started)
    return [statistics.median(taken) * 1000 for taken in times]


def pages_of(conn, label: str | None) -> dict[str, int]:
    last = -(-records.shown_count(conn, label) // PER_PAGE)
    return {"first": 1, "middle": (last + 1) // 2, "last": last}


def measure(engine, kind: str, count: int, label: str | None, runs: int) -> dict:
    with db.reading(engine) as conn:
        pages = pages_of(conn, label)
        for number in pages.values():  # the same answers, before and now
            assert offset_page(conn, label, number, PER_PAGE) == gallery.gallery_page(
                conn, label, number, PER_PAGE
            )
        row = {"database": kind, "drawings": count, "label": label or "all"}
        for where, n in pages.items():
            before, now = paired_ms(
                [
                    lambda: offset_page(conn, label, n, PER_PAGE),  # noqa: B023 (called at once)
                    lambda: gallery.gallery_page(conn, label, n, PER_PAGE),  # noqa: B023
                ],
                runs,
            )
            row[where] = f"{before:.1f} → {now:.1f}"
        row["anchors"] = f"{median_ms(lambda: gallery.anchors_of(conn, label), runs):.1f}"
    return row


def explain(engine, kind: str) -> None:
    """The plans of an anchored page's names, of its count of drawings added since the anchors,
    and of the anchors' pass."""
    with db.reading(engine) as conn:
        for label in (None, "3"):
            anchors = gallery.anchors_of(conn, label)
            middle = gallery.entries_from(label, anchors[len(anchors) // 2]).limit(PER_PAGE)
            queries = {
                "page from an anchor": middle,
                "drawings added since the anchors": gallery.newer_than(label, anchors[0]),
                "anchors' pass": gallery.anchors_query(label),
            }
            for what, query in queries.items():
                print(f"\n{kind}, label {label or 'all'}, {what}:")
                for line in plan(conn, query):
                    print("   ", line)


def plan(conn, query) -> list[str]:
    compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
        return [row[-1] for row in rows]
    return [row[0] for row in conn.exec_driver_sql(f"EXPLAIN ANALYZE {compiled}").all()]


def open_engine(kind: str, scratch: Path, postgres) -> sa.Engine:
    if kind == "postgresql":
        url = postgres.new_database()
    else:
        url = f"sqlite:///{scratch / f'gallery-{time.monotonic_ns()}.sqlite3'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    return engine


def table(rows: list[dict]) -> str:
    head = (
        "| database | drawings | label | page 1 ms, before → now | middle page ms | last page ms"
        " | anchors' pass ms |\n|---|---:|---|---|---|---|---:|"
    )
    lines = [
        f"| {r['database']} | {r['drawings']:,} | {r['label']} | {r['first']} | {r['middle']}"
        f" | {r['last']} | {r['anchors']} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def main() -> int:
    import tempfile

    from tests.helpers import PostgresServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", default="50000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    kinds = args.databases.split(",")
    postgres = PostgresServer() if "postgresql" in kinds else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="digits-gallery-") as scratch:
        if postgres:
            postgres.start()
        try:
            for count in map(int, args.drawings.split(",")):
                for kind in kinds:
                    engine = open_engine(kind, Path(scratch), postgres)
                    fill(engine, count)
                    if args.explain:
                        explain(engine, kind)
                    for label in (None, "3"):
                        rows.append(measure(engine, kind, count, label, args.runs))
                    engine.dispose()
        finally:
            if postgres:
                postgres.stop()
    print("\n" + table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
