"""Run directory, metrics log, statistics store and atomic writes."""

import json
import math
import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import frugalrl.tracking as tracking
from frugalrl.tracking import (
    COMMIT_MARKER,
    MetricsLog,
    PromptStat,
    RunDir,
    StatsStore,
    atomic_directory,
    atomic_write_bytes,
    atomic_write_text,
    merge_steps,
    read_metrics,
)
from frugalrl.tracking import metrics as metrics_module

# --- metrics.jsonl ---------------------------------------------------------------------------------------


def test_metrics_round_trip_including_non_finite(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.log(1, {"rollout/reward_mean": 0.25, "count/responses": 64, "loss/kl": float("nan")})
        log.log(
            2,
            {
                "loss/ratio_max": float("inf"),
                "loss/ratio_min": float("-inf"),
                "adv/mean": np.float32(0.5),  # NumPy scalar -> float
                "count/gen_tokens": np.int64(1234),  # NumPy int -> int, stays exact
                "loss/policy": torch.tensor(-1.5),  # 0-d tensor -> float
                "data/effective_step": True,  # bool -> 1
                "eval/greedy": None,  # not measured this step: left out
            },
        )
    # The file is strict JSON: no bare NaN/Infinity literals anywhere.
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert '"loss/kl": "NaN"' in path.read_text()

    first, second = read_metrics(path)
    assert first["step"] == 1 and first["rollout/reward_mean"] == 0.25
    assert first["count/responses"] == 64 and isinstance(first["count/responses"], int)
    assert math.isnan(first["loss/kl"])
    assert second == {
        "step": 2,
        "loss/ratio_max": math.inf,
        "loss/ratio_min": -math.inf,
        "adv/mean": 0.5,
        "count/gen_tokens": 1234,
        "loss/policy": -1.5,
        "data/effective_step": 1,
    }


def test_metrics_tolerate_a_truncated_last_line_and_repair_it_before_appending(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.log(1, {"rollout/reward_mean": 0.1})
        log.log(2, {"rollout/reward_mean": 0.2})
    with open(path, "a") as f:
        f.write('{"step": 3, "rollout/rew')  # the write in flight when the run was killed
    assert [r["step"] for r in read_metrics(path)] == [1, 2]

    with MetricsLog(path) as log:  # resuming appends after the repaired file, not onto the fragment
        assert log.last_step == 2
        log.log(3, {"rollout/reward_mean": 0.3})
    assert [r["rollout/reward_mean"] for r in read_metrics(path)] == [0.1, 0.2, 0.3]
    assert path.read_text().endswith("}\n")


def test_metrics_keep_a_complete_last_record_without_newline(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "rollout/reward_mean": 0.5}\n{"step": 2, "rollout/reward_mean": 0.75}')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    with MetricsLog(path) as log:
        log.log(3, {"rollout/reward_mean": 1.0})
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_metrics_corruption_before_the_last_line_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "x/y\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON metrics record"):
        read_metrics(path)


def test_metrics_truncate_after_keeps_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        for step in range(1, 6):
            log.log(step, {"rollout/reward_mean": step / 10})
    with MetricsLog(path) as log:
        with pytest.raises(ValueError, match="truncate_after"):
            log.log(3, {"rollout/reward_mean": 0.0})  # resuming without truncating is caught
        log.truncate_after(3)
        assert log.last_step == 3
        log.log(4, {"rollout/reward_mean": 0.44})
    assert [(r["step"], r["rollout/reward_mean"]) for r in read_metrics(path)] == [
        (1, 0.1),
        (2, 0.2),
        (3, 0.3),
        (4, 0.44),
    ]
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.jsonl"]  # no temporary files left


def test_metrics_records_of_one_step_merge(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.log(0, {"eval/greedy": 0.1})
        log.log(5, {"rollout/reward_mean": 0.4})
        log.log(5, {"eval/greedy": 0.3})  # evaluation logged separately at the same step is allowed
    assert merge_steps(read_metrics(path)) == [
        {"step": 0, "eval/greedy": 0.1},
        {"step": 5, "rollout/reward_mean": 0.4, "eval/greedy": 0.3},
    ]


@pytest.mark.parametrize("key", ["reward", "step", "/reward", "rollout/", "a//b"])
def test_metrics_reject_keys_without_a_namespace(tmp_path, key):
    with MetricsLog(tmp_path / "m.jsonl") as log, pytest.raises(ValueError, match="namespace"):
        log.log(1, {key: 1.0})


def test_metrics_reject_non_numeric_values(tmp_path):
    with MetricsLog(tmp_path / "m.jsonl") as log, pytest.raises(TypeError, match="'rollout/x'"):
        log.log(1, {"rollout/x": "high"})


def test_tensorboard_absent_warns_once_and_logging_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    monkeypatch.setattr(metrics_module, "_tensorboard_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("a.jsonl", "b.jsonl"):
            with MetricsLog(tmp_path / name, tensorboard=True) as log:
                log.log(1, {"rollout/reward_mean": 0.5})
                log.log(2, {"rollout/reward_mean": 0.6})
    assert [str(w.message) for w in caught if "TensorBoard" in str(w.message)] == [
        "TensorBoard logging is off: the tensorboard package is not installed "
        "(pip install 'frugalrl[tensorboard]'); metrics.jsonl is written as usual"
    ]
    assert len(read_metrics(tmp_path / "b.jsonl")) == 2


class _FakeWriter:
    instances: list["_FakeWriter"] = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        _FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_mirror_writes_every_scalar_and_purges_on_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics_module, "_summary_writer_class", lambda: _FakeWriter)
    _FakeWriter.instances = []
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path, tensorboard=True) as log:
        log.log(1, {"rollout/reward_mean": 0.5, "count/responses": 8})
        log.log(2, {"rollout/reward_mean": 0.75})
    with MetricsLog(path, tensorboard=True) as log:
        log.truncate_after(1)  # resume from the step-1 checkpoint: TensorBoard must forget step 2
        log.log(2, {"rollout/reward_mean": 0.6})
    first, resumed = _FakeWriter.instances
    assert first.log_dir == str(tmp_path) and first.purge_step is None and first.closed
    assert first.scalars == [
        ("rollout/reward_mean", 0.5, 1),
        ("count/responses", 8, 1),
        ("rollout/reward_mean", 0.75, 2),
    ]
    assert resumed.purge_step == 2 and resumed.scalars == [("rollout/reward_mean", 0.6, 2)]


def test_the_package_docstring_documents_every_namespace():
    for namespace in tracking.NAMESPACES:
        assert f"\n    {namespace}/ " in tracking.__doc__


# --- stats.sqlite ----------------------------------------------------------------------------------------


def _hand_made_stats(store):
    store.record(1, [PromptStat("q1", 4, 1, 0.25, 40), PromptStat("q2", 4, 4, 1.0, 20)])
    store.record(2, [PromptStat("q1", 4, 3, 0.75, 36), PromptStat("q3", 4, 0, 0.0, 80, level=2)])
    store.record(3, [PromptStat("q2", 4, 2, 0.5, 24), PromptStat("q1", 4, 4, 1.0, 30, source="replay")])
    store.record(4, [PromptStat("q1", 4, 1, 0.25, 44)])


def test_stats_pass_rates(tmp_path):
    with StatsStore(tmp_path / "stats.sqlite") as store:
        _hand_made_stats(store)
        # q1 train rows, steps 1, 2, 4: samples 4+4+4 = 12, correct 1+3+1 = 5 (its replay row not counted)
        # q2: steps 1, 3 -> (8, 4+2 = 6); q3: step 2 -> (4, 0)
        assert store.pass_rates() == {"q1": (12, 5), "q2": (8, 6), "q3": (4, 0)}
        # steps 2..3 only: q1 step 2 -> (4, 3); q2 step 3 -> (4, 2); q3 step 2 -> (4, 0)
        assert store.pass_rates(min_step=2, max_step=3) == {"q1": (4, 3), "q2": (4, 2), "q3": (4, 0)}
        # every source: q1 gains the replay row of step 3 -> (16, 9)
        assert store.pass_rates(source=None)["q1"] == (16, 9)
        assert store.pass_rates(source="replay") == {"q1": (4, 4)}
        assert store.last_step() == 4


def test_stats_per_epoch_accuracy(tmp_path):
    with StatsStore(tmp_path / "stats.sqlite") as store:
        _hand_made_stats(store)
        # 2 steps per epoch from step 1: epoch 0 = steps 1-2, epoch 1 = steps 3-4.
        # q1: epoch 0 (1+3)/(4+4) = 0.5; epoch 1 only step 4 (replay excluded): 1/4 = 0.25
        # q2: epoch 0 4/4 = 1.0; epoch 1 2/4 = 0.5.  q3: epoch 0 0/4 = 0.0; not sampled in epoch 1 -> None
        assert store.per_epoch_accuracy(2) == {"q1": [0.5, 0.25], "q2": [1.0, 0.5], "q3": [0.0, None]}
        # one step per epoch: q1 steps 1, 2, -, 4 -> [1/4, 3/4, None, 1/4]
        assert store.per_epoch_accuracy(1)["q1"] == [0.25, 0.75, None, 0.25]
        # steps counted from 0: epoch 0 = steps 0-1, epoch 1 = 2-3, epoch 2 = 4
        assert store.per_epoch_accuracy(2, first_step=0)["q1"] == [0.25, 0.75, 0.25]


def test_stats_per_epoch_accuracy_rejects_steps_before_the_first(tmp_path):
    with StatsStore(tmp_path / "stats.sqlite") as store:
        store.record(0, [PromptStat("q1", 2, 1, 0.5, 10)])
        with pytest.raises(ValueError, match="before first_step=1"):
            store.per_epoch_accuracy(2)
        assert store.per_epoch_accuracy(2, first_step=0) == {"q1": [0.5]}


def test_stats_truncate_after_and_reopen(tmp_path):
    path = tmp_path / "stats.sqlite"
    with StatsStore(path) as store:
        _hand_made_stats(store)
        store.truncate_after(2)
    with StatsStore(path) as store:  # persisted across close / reopen
        assert store.last_step() == 2
        # steps 1-2 only: q1 (8, 4), q2 (4, 4), q3 (4, 0)
        assert store.pass_rates() == {"q1": (8, 4), "q2": (4, 4), "q3": (4, 0)}
        assert store.per_epoch_accuracy(2) == {"q1": [0.5], "q2": [1.0], "q3": [0.0]}


def test_stats_reject_impossible_rows():
    with pytest.raises(ValueError, match="correct=5, samples=4"):
        PromptStat("q1", samples=4, correct=5, mean_reward=1.0, tokens=10)


def test_a_killed_run_keeps_every_committed_metric_and_statistic(tmp_path):
    script = f"""
import os, signal
from frugalrl.tracking import MetricsLog, PromptStat, StatsStore
log = MetricsLog({str(tmp_path / "metrics.jsonl")!r})
stats = StatsStore({str(tmp_path / "stats.sqlite")!r})
for step in (1, 2):
    log.log(step, {{"rollout/reward_mean": step / 4}})
    stats.record(step, [PromptStat("q1", 4, step, step / 4, 10)])
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    assert [r["rollout/reward_mean"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [0.25, 0.5]
    with StatsStore(tmp_path / "stats.sqlite") as store:
        assert store.pass_rates() == {"q1": (8, 3)}


# --- atomic writes, checkpoints, run directory -----------------------------------------------------------


def test_atomic_write_text_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "config.yaml"
    atomic_write_text(path, "a: 1\n")
    atomic_write_text(path, "a: 2\n")
    atomic_write_bytes(tmp_path / "sub" / "blob.bin", b"\x00\x01")
    assert path.read_text() == "a: 2\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["blob.bin", "config.yaml"]
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # the umask decides permissions, as for an ordinary write (not mkstemp's 0600)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_atomic_directory_commits_on_success_and_replaces_an_older_one(tmp_path):
    final = tmp_path / "checkpoints" / "step_5"
    with atomic_directory(final) as tmp:
        assert tmp == tmp_path / "checkpoints" / ".step_5.tmp" and not final.exists()
        (tmp / "model.bin").write_bytes(b"old")
    with atomic_directory(final) as tmp:
        (tmp / "model.bin").write_bytes(b"new")
        (tmp / "optim.bin").write_bytes(b"o")
    assert sorted(p.name for p in final.iterdir()) == [COMMIT_MARKER, "model.bin", "optim.bin"]
    assert (final / "model.bin").read_bytes() == b"new"
    assert [p.name for p in final.parent.iterdir()] == ["step_5"]  # no .tmp, no .old


def test_atomic_directory_leaves_nothing_on_exception(tmp_path):
    final = tmp_path / "step_7"
    with pytest.raises(RuntimeError, match="disk full"), atomic_directory(final) as tmp:
        (tmp / "model.bin").write_bytes(b"partial")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []

    with atomic_directory(final) as tmp:
        (tmp / "model.bin").write_bytes(b"good")
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "model.bin").write_bytes(b"partial")
        raise RuntimeError
    assert (final / "model.bin").read_bytes() == b"good"  # a failed rewrite keeps the committed one
    assert [p.name for p in tmp_path.iterdir()] == ["step_7"]


def test_atomic_directory_clears_a_temporary_left_by_a_killed_run(tmp_path):
    stale = tmp_path / ".step_3.tmp"
    stale.mkdir()
    (stale / "half_written.bin").write_bytes(b"??")
    with atomic_directory(tmp_path / "step_3") as tmp:
        assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_3"]


def test_run_dir_layout(tmp_path):
    run = RunDir(tmp_path / "runs" / "demo")
    assert run.path.is_dir() and run.checkpoints_dir.is_dir() and run.plots_dir.is_dir()
    assert run.config_path == run.path / "config.yaml"
    assert run.metrics_path == run.path / "metrics.jsonl"
    assert run.stats_path == run.path / "stats.sqlite"
    assert run.report_path == run.path / "report.md"
    assert run.checkpoint_dir(12) == run.path / "checkpoints" / "step_12"
    assert run.latest_checkpoint() is None
    with pytest.raises(ValueError, match="non-negative"):
        run.checkpoint_dir(-1)
    RunDir(run.path)  # reopening an existing run (resume) is fine


def test_latest_checkpoint_is_the_highest_committed_step(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in (9, 10, 2):
        with atomic_directory(run.checkpoint_dir(step)) as tmp:
            (tmp / "model.bin").write_bytes(b"w")
    killed = run.checkpoints_dir / ".step_30.tmp"  # a write in flight when the run was killed
    killed.mkdir()
    (killed / "model.bin").write_bytes(b"half")
    (run.checkpoints_dir / "notes.txt").write_text("not a checkpoint")
    assert run.checkpoint_steps() == [2, 9, 10]  # numeric order: step_10 after step_9
    assert run.latest_checkpoint() == run.checkpoints_dir / "step_10"

    (run.checkpoints_dir / "step_40").mkdir()  # written in place, not committed: may be half written
    with pytest.warns(RuntimeWarning, match="step_40: it has no .committed marker"):
        assert run.latest_checkpoint() == run.checkpoints_dir / "step_10"


def test_tracking_import_is_light():
    # The training loop imports tracking; plotting libraries load only when a report is written.
    code = "import sys, frugalrl.tracking; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.stdout.split() == ["False", "False"], result.stderr
