"""benchmarks/opening_groups.py reads R3's opening shares from the first four steps of a run, and no later."""

import json

import pytest

import benchmark_scripts


def test_opening_shares_average_the_first_four_steps_only(tmp_path):
    opening_groups = benchmark_scripts.load("opening_groups")
    records = [{"step": 0, "eval/avg@4": 0.5}]  # an evaluation record carries no group shares
    records += [
        {"step": s, "data/frac_all_wrong": 0.25 * (s % 2), "data/frac_all_correct": 0.125} for s in (1, 2, 3, 4)
    ]
    records += [{"step": 5, "data/frac_all_wrong": 1.0, "data/frac_all_correct": 1.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    shares = opening_groups.opening_shares(tmp_path)

    assert shares == {"all_wrong": pytest.approx(0.125), "all_correct": pytest.approx(0.125)}
