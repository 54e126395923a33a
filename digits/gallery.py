"""The gallery's pages: the shown drawings newest first (by `sort_key`, then `name`), from the
dataset's index (digits/db.py), every page at about the cost of the first.

A page's names come from the index alone (an index-only scan), then only its rows are read.
OFFSET alone would step over every index entry before a deep page: 12-44 ms of database CPU
at 50k-100k drawings on PostgreSQL, taken from the predictions on the same cores. So each
process keeps, for ANCHOR_SECONDS, the anchors of each label: the (sort_key, name) of every
STRIDE-th entry, from one pass over the same index (digits/cached.py shares it between the
callers). A page then starts at the anchor at or before its first entry and steps over fewer
than STRIDE entries from there. Pages within the newest NEAR entries need no anchor.

The anchors are kept per label, not per `per_page`: at most eleven labels and "all" per
process, a tuple per STRIDE drawings each, whatever `per_page` callers send (anchors at every
page's first entry would keep one per drawing for `per_page=1`, and cost a pass over the index
for each `per_page` asked).

While the anchors are kept, the index may change; no change is ever an error:
- Drawings added newer than every anchored entry (the usual case: a new drawing is the newest)
  are counted at each read, so every page stays exactly what OFFSET gives.
- Each drawing deleted since, or added among older ones (a feedback copy is named by its
  prediction's time), moves the pages read from an anchor after it by one place until the
  anchors expire (ANCHOR_SECONDS at most): a deletion makes them start one entry earlier
  (an entry shows at the end of one page and again at the start of the next), such an
  addition one entry later (an entry shows on neither). A reader paging with OFFSET while the
  index changes sees the same kind of shift.
- A page past the last anchor is read from it: drawings added there since are found, and a
  page past the end is empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digits import db, records
from digits.cached import SharedAnswer

STRIDE = 50  # index entries between two anchors: the most a page steps over from one
# A page that starts within the newest NEAR entries steps over them with OFFSET, without an
# anchor: cheaper than an anchored page's count of the drawings added since (a round trip;
# bench/gallery.py: about 0.15-0.4 µs an entry against 0.3-0.9 ms), exact, and a label with
# fewer drawings never takes anchors at all. At least 1: page 1 needs none.
NEAR = 2000
ANCHOR_SECONDS = 60.0  # one pass over the index per label and process a minute at most

Anchor = tuple[str, str]  # an entry's (sort_key, name): where a page may start reading

_anchors: SharedAnswer[list[Anchor]] = SharedAnswer(ANCHOR_SECONDS)


def gallery_page(
    conn: Connection, label: str | None, page: int, per_page: int
) -> tuple[list[dict], int]:
    """One page of drawings, newest first, and how many there are in all (the kept counts)."""
    total = records.shown_count(conn, label)
    d = db.drawings
    names = page_names(conn, label, (page - 1) * per_page, per_page, total).subquery()
    rows = conn.execute(
        sa.select(d.c.name, d.c.label, d.c.created, d.c.source)
        .join_from(d, names, d.c.name == names.c.name)
        .order_by(*newest_first())
    ).all()
    return [row._asdict() for row in rows], total


def page_names(
    conn: Connection, label: str | None, first: int, per_page: int, total: int
) -> sa.Select:
    """The names of the `per_page` entries from the `first` (0: the newest). An OFFSET past
    all `total` shown entries finds none either way: bounded by it, the OFFSET of a page
    number near 10^18 stays an SQL integer."""
    start, skip = starting_point(conn, label, first)
    return entries_from(label, start).limit(per_page).offset(min(skip, total))


def starting_point(conn: Connection, label: str | None, first: int) -> tuple[Anchor | None, int]:
    """Where a page starts reading (an anchor, or None: the newest entry) and how many entries
    it steps over from there to its `first`."""
    if first < NEAR:
        return None, first
    anchors = kept_anchors(conn, label)
    added = added_since(conn, label, anchors[0]) if anchors else first
    if added >= first:  # the page starts among the drawings added since: a few to step over
        return None, first
    nearest = min((first - added) // STRIDE, len(anchors) - 1)
    return anchors[nearest], first - added - nearest * STRIDE


def kept_anchors(conn: Connection, label: str | None) -> list[Anchor]:
    key = (str(conn.engine.url), label)
    return _anchors.get(key, lambda: anchors_of(conn, label))


def clear_anchors() -> None:
    _anchors.clear()


def anchors_of(conn: Connection, label: str | None) -> list[Anchor]:
    return [(row.sort_key, row.name) for row in conn.execute(anchors_query(label))]


def anchors_query(label: str | None) -> sa.Select:
    """The (sort_key, name) of the shown entries 0, STRIDE, 2 * STRIDE, ..., newest first: one
    pass over the index (a window function; SQLite and PostgreSQL alike)."""
    d = db.drawings
    place = sa.func.row_number().over(order_by=newest_first()).label("place")
    numbered = sa.select(d.c.sort_key, d.c.name, place).where(*shown(label)).subquery()
    return (
        sa.select(numbered.c.sort_key, numbered.c.name)
        .where((numbered.c.place - 1) % STRIDE == 0)
        .order_by(numbered.c.place)
    )


def added_since(conn: Connection, label: str | None, newest: Anchor) -> int:
    """How many shown entries are newer than `newest` (the first anchor): those added since."""
    return int(conn.execute(newer_than(label, newest)).scalar_one())


def newer_than(label: str | None, newest: Anchor) -> sa.Select:
    """The count of shown entries newer than `newest`: an index range, empty but for the
    drawings added since."""
    return (
        sa.select(sa.func.count())
        .select_from(db.drawings)
        .where(*shown(label), position() > newest)
    )


def entries_from(label: str | None, start: Anchor | None) -> sa.Select:
    """The shown entries' names from `start` on (None: from the newest), newest first: an index
    range scan, whose rows come in the index's order."""
    from_start = [] if start is None else [position() <= start]
    chosen = sa.select(db.drawings.c.name).where(*shown(label), *from_start)
    return chosen.order_by(*newest_first())


def shown(label: str | None) -> list:
    d = db.drawings
    return [d.c.deleted.is_(False)] + ([d.c.label == label] if label else [])


def position():
    """An entry's place in the order, as a row value: (sort_key, name), which both covering
    indexes hold after their equality columns, so a comparison with it is an index range."""
    return sa.tuple_(db.drawings.c.sort_key, db.drawings.c.name)


def newest_first() -> tuple:
    return db.drawings.c.sort_key.desc(), db.drawings.c.name.desc()
