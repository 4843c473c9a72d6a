"""Every recipe computes what it computed when the fingerprints were recorded (benchmarks/recipe_fingerprint.py):
5 short steps each, every metric but the clocks compared. A change meant to change behaviour re-records
tests/fixtures/recipe_metrics.json with `--record` in the same commit."""

import json
from pathlib import Path

import pytest

import benchmark_scripts

REPO = Path(__file__).resolve().parents[1]
fp = benchmark_scripts.load("recipe_fingerprint")
RECORDED = json.loads((REPO / "tests" / "fixtures" / "recipe_metrics.json").read_text())


def test_every_recipe_has_a_fingerprint():
    recipes = {p.stem for p in (REPO / "configs").glob("*.yaml")}
    covered = {recipe.removesuffix(".yaml") for recipe, _ in fp.RUNS.values()}
    assert recipes <= covered, f"recipes without a fingerprint run: {sorted(recipes - covered)}"
    assert set(fp.RUNS) == set(RECORDED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(fp.RUNS))
def test_recipe_metrics_are_unchanged(name, tmp_path):
    # One thread everywhere: recorded that way; 1e-9 relative leaves room for nothing but summation order.
    assert fp.first_difference(RECORDED[name], fp.fingerprint(name, tmp_path / name), rel_tol=1e-9) is None
