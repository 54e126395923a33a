"""The gallery's pages through anchors (digits/gallery.py), each case on SQLite and PostgreSQL:
the pages OFFSET gives, and no more than the documented shift while the index changes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from digits import cached, db, gallery, records
from digits.dataset import LABELS

LABELS_READ = (None, "3", "none")


@pytest.fixture(autouse=True)
def small_stride(monkeypatch):
    """Anchors every 4 entries, from the second on: tens of drawings then make many anchors
    and remainders."""
    monkeypatch.setattr(gallery, "STRIDE", 4)
    monkeypatch.setattr(gallery, "NEAR", 1)
    gallery.clear_anchors()
    yield
    gallery.clear_anchors()


def name(i: int, label: str | None = None, tail: str = "abcdef") -> str:
    """The i-th drawing's name, in time order; every fifth shares its time and tail with the
    one before (another label): a tie in sort_key, which the name then orders."""
    second = i - (i % 5 == 4)
    stamp = f"20261124T10{second // 60:02d}{second % 60:02d}000000"
    return f"{label or LABELS[i % len(LABELS)]}_{stamp}_{tail}"


def add(engine, names: list[str]) -> None:
    with db.writing(engine) as conn:
        for added in names:
            meta = {"name": added, "label": added.split("_")[0], "source": "collect"}
            records.index_drawing(conn, meta)


def delete(engine, names: list[str]) -> None:
    with db.writing(engine) as conn:
        for deleted in names:
            assert records.mark_deleted(conn, deleted)


def page_names(engine, label: str | None, page: int, per_page: int) -> list[str]:
    with db.reading(engine) as conn:
        items, _ = gallery.gallery_page(conn, label, page, per_page)
    return [item["name"] for item in items]


def offset_order(engine, label: str | None) -> list[str]:
    """Every shown name as OFFSET pages them: newest first, read from the newest entry on."""
    with db.reading(engine) as conn:
        return list(conn.execute(gallery.entries_from(label, None)).scalars())


def take_anchors(engine) -> None:
    for label in LABELS_READ:
        page_names(engine, label, 2, 1)


def every_page(engine, label: str | None, per_page: int, shown: int) -> list[tuple[int, list]]:
    """(the page's first place, its names) for each page, the last partial one and two past it."""
    pages = -(-shown // per_page)
    return [
        ((page - 1) * per_page, page_names(engine, label, page, per_page))
        for page in range(1, pages + 3)
    ]


def test_pages_through_anchors_are_the_offset_pages(engine):
    add(engine, [name(i) for i in range(60)])
    delete(engine, [name(13), name(40)])
    with db.reading(engine) as conn:
        assert len(gallery.anchors_of(conn, None)) == 15  # 58 shown, every 4th
    for label in LABELS_READ:
        order = offset_order(engine, label)
        shown = [n for n in map(name, range(60)) if n not in (name(13), name(40))]
        shown = [n for n in shown if label in (None, n.split("_")[0])]
        assert order == sorted(shown, key=lambda n: (n.split("_", 1)[1], n), reverse=True)
        for per_page in (1, 3, 7, 48):
            for first, names in every_page(engine, label, per_page, len(order)):
                assert names == order[first : first + per_page]
    with db.reading(engine) as conn:
        far = gallery.gallery_page(conn, None, 10**9, 200)
    assert far == ([], 58)


def test_drawings_added_newest_leave_every_page_exact(engine):
    add(engine, [name(i) for i in range(40)])
    take_anchors(engine)
    add(engine, [name(i) for i in range(40, 49)])  # newer than every anchored entry
    for label in LABELS_READ:
        order = offset_order(engine, label)
        for per_page in (1, 5, 8):
            for first, names in every_page(engine, label, per_page, len(order)):
                assert names == order[first : first + per_page]


def test_deletions_and_older_additions_shift_a_page_by_their_number_at_most(engine):
    """Each page is the OFFSET order's from a place at most `deleted` before its own and at
    most `inserted` after it: no error, and nothing further moved or missing."""
    add(engine, [name(i) for i in range(60)])
    take_anchors(engine)
    deleted = [name(58), name(31), name(6)]
    inserted = [name(45, "7", "abcdee"), name(20, "3", "abcdee")]  # among older drawings
    delete(engine, deleted)
    add(engine, inserted)
    oldest = "3_20261123T000000000000_abcdef"  # older than all: past the last anchor
    add(engine, [oldest])
    for label in LABELS_READ:
        order = offset_order(engine, label)
        for per_page in (1, 3, 7):
            pages = every_page(engine, label, per_page, len(order))
            for first, names in pages:
                places = range(max(0, first - len(deleted)), first + len(inserted) + 1)
                assert any(names == order[at : at + per_page] for at in places)
            seen = {n for _, names in pages for n in names}
            assert len(set(order) - seen) <= len(inserted)  # a deletion repeats, never skips
            assert oldest in seen or label == "none"  # added since, past the last anchor


def test_a_page_past_the_end_is_empty_however_far(engine):
    add(engine, [name(i) for i in range(10)])
    with db.reading(engine) as conn:
        for label in (None, "none"):
            for page in (4, 10**18 - 1):  # the largest the API takes (digits/api.py count_arg)
                total = 10 if label is None else 0
                assert gallery.gallery_page(conn, label, page, 200) == ([], total)


def test_anchors_are_taken_again_once_stale(engine, monkeypatch):
    """After ANCHOR_SECONDS on digits/cached.py's clock (a fake one: no sleep, no race)."""
    now = [1000.0]
    monkeypatch.setattr(cached, "time", SimpleNamespace(monotonic=lambda: now[0]))
    add(engine, [name(i) for i in range(30)])
    take_anchors(engine)
    delete(engine, [name(29), name(28)])  # the two newest: every later page shifts
    order = offset_order(engine, None)
    now[0] += gallery.ANCHOR_SECONDS - 1
    assert page_names(engine, None, 3, 5) == order[8:13]  # shifted, as documented
    now[0] += 1
    assert page_names(engine, None, 3, 5) == order[10:15]  # anchors taken again: exact


def test_pages_near_the_newest_take_no_anchors(engine, monkeypatch):
    monkeypatch.setattr(gallery, "NEAR", 10)
    taken = []
    anchors_of = gallery.anchors_of
    monkeypatch.setattr(gallery, "anchors_of", lambda *a: taken.append(a) or anchors_of(*a))
    add(engine, [name(i) for i in range(30)])
    order = offset_order(engine, None)
    assert page_names(engine, None, 1, 7) == order[:7]
    assert page_names(engine, None, 2, 9) == order[9:18]  # starts at 9: near enough
    assert taken == []
    assert page_names(engine, None, 3, 5) == order[10:15]  # starts at 10: from an anchor
    assert len(taken) == 1


def test_a_failed_anchors_pass_is_a_503_and_not_kept(engine, monkeypatch):
    add(engine, [name(i) for i in range(10)])
    anchors_of = gallery.anchors_of

    def lost(*_):
        raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(gallery, "anchors_of", lost)
    with pytest.raises(db.DatabaseUnavailable):  # the API's 503
        page_names(engine, None, 2, 3)
    monkeypatch.setattr(gallery, "anchors_of", anchors_of)
    assert page_names(engine, None, 2, 3) == offset_order(engine, None)[3:6]
