"""The update's spool: the image comes back whole and in order, and each piece's RAM (its
file) is given back as soon as the slot write has taken it."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from appliance.services.update.spool import Spool


def pieces_on_disk(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


@given(st.lists(st.binary(min_size=0, max_size=300), max_size=40), st.integers(1, 257))
def test_what_goes_in_comes_out_whole_in_pieces(tmp_path_factory, writes, piece) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("spool")
    with Spool(root, piece=piece) as spool:
        for data in writes:
            spool.write(data)
        want = b"".join(writes)
        assert spool.size == len(want)
        got = list(spool.drain())
    assert b"".join(got) == want
    assert all(len(p) == piece for p in got[:-1]) and all(got)
    assert pieces_on_disk(root) == 0


def test_each_piece_is_gone_once_the_writer_has_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, piece=1000)
    spool.write(b"x" * 4500)
    assert pieces_on_disk(tmp_path) == 5
    left = []
    for _ in spool.drain():
        left.append(pieces_on_disk(tmp_path))
    assert left == [4, 3, 2, 1, 0]
    spool.close()
    assert list(tmp_path.iterdir()) == []  # the spool's own directory too


def test_a_spool_given_up_half_way_leaves_nothing(tmp_path: Path) -> None:
    with Spool(tmp_path, piece=1000) as spool:
        spool.write(b"y" * 3000)
        next(spool.drain())
    assert list(tmp_path.iterdir()) == []
