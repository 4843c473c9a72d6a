"""benchmarks/selection_table.py on a hand-made bench directory: per-seed shares of the baseline's run to reach
its final accuracy, the every-seed bar, and the overhead columns."""

import json
from pathlib import Path

import pytest

import benchmark_scripts


@pytest.fixture(scope="module")
def selection_table():
    return benchmark_scripts.load("selection_table")


def _run(out: Path, label: str, seed: int, points: list[tuple[float, float, float]], *, select: float = 0.0) -> None:
    """A finished run whose evaluations are (responses, seconds, accuracy), one step apart."""
    run_dir = out / "runs" / label / f"seed{seed}"
    run_dir.mkdir(parents=True)
    records = []
    for step, (responses, seconds, accuracy) in enumerate(points):
        record = {"step": step, "count/responses": responses, "time/train_elapsed": seconds, "eval/avg@4": accuracy}
        if step:
            record |= {"data/frac_all_correct": 0.25, "data/frac_all_wrong": 0.5, "time/select": select,
                       "time/generate": 1.0, "time/update": 2.0}
        records.append(record)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "report.md").write_text("done\n")


def test_shares_per_seed_and_the_bar(selection_table, tmp_path):
    _run(tmp_path, "grpo", 0, [(0, 0, 0.4), (1000, 10, 0.5), (2000, 20, 0.6)])
    _run(tmp_path, "grpo", 1, [(0, 0, 0.4), (1000, 12, 0.55), (2000, 24, 0.7)])
    # target 0.65; the baseline's mean run: 2,000 responses, 22 s
    _run(tmp_path, "fast", 0, [(0, 0, 0.4), (200, 3, 0.7), (400, 6, 0.7)], select=0.5)
    _run(tmp_path, "fast", 1, [(0, 0, 0.4), (400, 4, 0.9)], select=0.5)
    (tmp_path / "bench.json").write_text(json.dumps({"recipes": [{"label": "fast"}, {"label": "grpo"}]}))
    text = selection_table.table(tmp_path, baseline="grpo", metric="eval/avg@4", max_responses=0.3, max_time=0.35)
    assert "final eval/avg@4, 65.0 (mean of 2 seeds)" in text and "2,000 responses, 22 s" in text
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| grpo", "| fast"]  # the baseline first
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines}
    # seed 0 crosses 0.65 at 200·0.25/0.3 = 166.7 responses (8% of 2,000) and 2.5 s (11% of 22 s);
    # seed 1 at 400·0.25/0.5 = 200 (10%) and 2 s (9%)
    assert rows["fast"][3:6] == ["8% / 10%", "11% / 9%", "yes"]
    # the baseline's own seed 0 never reaches its mean final value; seed 1 does at 1,000 + 1,000·0.1/0.15
    # = 1,667 responses (83%) and 12 + 12·0.1/0.15 = 20 s (91%)
    assert rows["grpo"][3:6] == ["— / 83%", "— / 91%", "—"]  # the bar is for the other recipes
    # informative = 1 − 0.25 − 0.5; selection time = (2 steps · 0.5 s) / 6 s and 0.5 s / 4 s, averaged
    assert rows["fast"][6:9] == ["25.0", f"{100 * (1 / 6 + 0.5 / 4) / 2:.1f}", "0"]
    # generation and update seconds summed over each run's steps (2 and 1 steps), averaged over seeds
    assert rows["fast"][10:12] == ["2", "3 |"]


def test_a_stricter_bar_fails_the_same_runs(selection_table, tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({"recipes": [{"label": "grpo"}, {"label": "fast"}]}))
    _run(tmp_path, "grpo", 0, [(0, 0, 0.4), (1000, 10, 0.6)])
    _run(tmp_path, "fast", 0, [(0, 0, 0.4), (500, 5, 0.6)])  # exactly half the responses and the time
    loose = selection_table.table(tmp_path, baseline="grpo", metric="eval/avg@4", max_responses=0.5, max_time=0.5)
    strict = selection_table.table(tmp_path, baseline="grpo", metric="eval/avg@4", max_responses=0.49, max_time=0.5)
    assert "| fast | 1 | 60.0 (60.0–60.0) | 50% | 50% | yes |" in loose
    assert "| fast | 1 | 60.0 (60.0–60.0) | 50% | 50% | no |" in strict
