"""The scoring helpers of bench/grouping.py (pure functions; what every figure in the
grouping docstrings rests on)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))

import grouping as bench  # noqa: E402


@pytest.mark.parametrize("scored,ap,r9", [
    ([(0.9, True), (0.8, True), (0.1, False)], 1.0, 1.0),
    ([(0.9, False), (0.8, True)], 0.5, 0.0),  # the only positive sits at precision 0.5
    ([(0.9, True), (0.8, False), (0.7, True)], (1 + 2 / 3) / 2, 0.5),
    ([(0.1, True), (0.9, True), (0.5, False)], (1 + 2 / 3) / 2, 0.5),  # sorted by score
])
def test_average_precision_and_recall_at_precision_09(scored, ap, r9):
    got_ap, got_r9 = bench._average_precision(scored)
    assert got_ap == pytest.approx(ap) and got_r9 == pytest.approx(r9)


def test_pairwise_and_bcubed():
    gold = {"a": "x", "b": "x", "c": "y", "d": "y"}
    assert bench.pairwise(gold, gold) == (1.0, 1.0, 1.0)
    pred = {"a": "1", "b": "1", "c": "1", "d": "2"}  # pairs ab ac bc; gold ab cd
    p, r, f = bench.pairwise(pred, gold)
    assert (p, r) == pytest.approx((1 / 3, 1 / 2)) and f == pytest.approx(0.4)
    bp, br, _ = bench.bcubed(pred, gold)
    assert bp == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1) / 4)
    assert br == pytest.approx((1 + 1 + 1 / 2 + 1 / 2) / 4)


def test_day_halves_split_by_utc_day():
    rows = [{"id": "a", "published": "Mon, 12 Mar 2018 23:59:00 GMT"},
            {"id": "b", "published": "2018-03-13T01:30:00+02:00"},  # 12 Mar 23:30 UTC
            {"id": "c", "published": "2018-03-13T00:00:00Z"}]
    assert bench.day_halves(rows) == {"2018-03-12": {"a", "b"}, "2018-03-13": {"c"}}
