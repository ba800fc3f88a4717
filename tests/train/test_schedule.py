"""The plateau rule of ``optim.schedule=plateau`` (host side; the cosine schedule is tested in tests/test_optim.py)."""
from __future__ import annotations

import json

import pytest

from jaxse.train.schedule import Plateau


def test_plateau_cuts_the_rate_after_patience_validations_without_progress():
    rule = Plateau(patience=2, factor=0.5, min_lr=1e-4)
    assert rule.state() == {"best": None, "bad_evals": 0}
    assert rule.update(5.0, 1e-3) is None and rule.state() == {"best": 5.0, "bad_evals": 0}
    assert rule.update(5.0005, 1e-3) is None  # within 1e-3 of the best: no progress
    assert rule.state() == {"best": 5.0, "bad_evals": 1}
    assert rule.update(4.0, 1e-3) == pytest.approx(5e-4) and rule.state() == {"best": 5.0, "bad_evals": 0}
    assert rule.update(6.0, 5e-4) is None and rule.state() == {"best": 6.0, "bad_evals": 0}  # progress resets
    assert rule.update(1.0, 1.5e-4) is None
    assert rule.update(1.0, 1.5e-4) == 1e-4  # never below min_lr


def test_plateau_state_survives_a_json_round_trip():
    rule = Plateau(patience=3, factor=0.5, min_lr=0.0)
    rule.update(2.0, 1e-3)
    rule.update(1.0, 1e-3)
    again = Plateau(patience=3, factor=0.5, min_lr=0.0, saved=json.loads(json.dumps(rule.state())))
    assert again.state() == rule.state() == {"best": 2.0, "bad_evals": 1}
    assert again.update(1.0, 1e-3) is None and again.update(1.0, 1e-3) == 5e-4  # the count went on
