"""Every shell script under benchmarks/ that calls `frugalrl bench` (itself or through matrix.sh) builds a
matrix that loads: each recipe's config with its overrides and the common ones. The scripts run for real,
with `frugalrl` and `taskset` replaced by stand-ins that record their arguments, so a typo in a label, a
config path or an override key fails here instead of an hour into a benchmark."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark_scripts import BENCHMARKS
from frugalrl.cli.bench import add_arguments, spec_from_args

ROOT = BENCHMARKS.parent
SCRIPTS = sorted(
    path.name
    for path in BENCHMARKS.glob("*.sh")
    if path.name != "matrix.sh" and any(call in path.read_text() for call in ("frugalrl bench", "bench_matrix "))
)

RECORDER = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["BENCH_CALLS"], "a") as handle:
    handle.write(json.dumps(sys.argv[1:]) + "\\n")
"""
TASKSET = '#!/usr/bin/env bash\nshift 2\nexec "$@"\n'  # taskset -c CORE CMD...: run CMD


def _recorded_bench_calls(script: str, tmp_path: Path, env: dict[str, str]) -> list[list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("frugalrl", RECORDER), ("taskset", TASKSET)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = {**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "BENCH_CALLS": str(calls)}
    subprocess.run(["bash", str(BENCHMARKS / script), str(tmp_path / "out")], cwd=ROOT, env=env, check=True)
    lines = calls.read_text().splitlines() if calls.is_file() else []
    return [argv[1:] for argv in map(json.loads, lines) if argv[:1] == ["bench"]]


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_builds_a_matrix_that_loads(script, tmp_path):
    calls = _recorded_bench_calls(script, tmp_path, env={"CORE": "0"})
    assert calls, f"{script} never called frugalrl bench"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for argv in calls:
        spec = spec_from_args(parser.parse_args(argv))
        for recipe in spec.recipes:  # the seeds differ only in run.seed: one of them loads for all
            config = spec.run_config(recipe, spec.seeds[-1])
            assert config.run.seed == spec.seeds[-1]


def test_the_scripts_with_a_recipe_subset_pass_only_that_subset(tmp_path):
    calls = _recorded_bench_calls("family_columns.sh", tmp_path, env={"RECIPES": "ppo raftpp", "CORE": "1"})
    labels = [argv[i + 1].split("=")[0] for argv in calls for i, arg in enumerate(argv) if arg == "--recipe"]
    assert labels == ["ppo", "raftpp"]
