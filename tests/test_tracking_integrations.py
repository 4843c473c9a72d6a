"""run.report_to: W&B and MLflow mirrors of metrics.jsonl, offline/local by default, each behind its extra.

The first tests inject stand-in `wandb` / `mlflow` modules that record every call, so they run without the
extras. The last two use the real packages and run only where those are installed (they were run with
wandb 0.31 and mlflow-skinny 3.17 + SQLAlchemy in a separate environment).
"""

import importlib.machinery
import sqlite3
import sys
import time
import types

import pytest

from frugalrl.config import ConfigError, load_config
from frugalrl.tracking import read_metrics
from frugalrl.tracking.metrics import MetricsLog

CONFIG = {"trainer": {"lr": 1e-4}, "run": {"name": "demo"}}


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() reads it
    module.__dict__.update(attrs)
    return module


@pytest.fixture
def fake_wandb(monkeypatch):
    calls = []

    class Run:
        def log(self, data, step):
            calls.append(("log", step, dict(data)))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", _module("wandb", init=init))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return calls


@pytest.fixture
def fake_mlflow(monkeypatch):
    calls = []

    class Client:
        def __init__(self, tracking_uri):
            calls.append(("client", tracking_uri))

        def get_experiment_by_name(self, name):
            return None

        def create_experiment(self, name):
            calls.append(("experiment", name))
            return "7"

        def create_run(self, experiment_id, run_name):
            calls.append(("run", experiment_id, run_name))
            return types.SimpleNamespace(info=types.SimpleNamespace(run_id="r1"))

        def log_batch(self, run_id, metrics=(), params=()):
            calls.append(("batch", run_id, [tuple(m) for m in metrics], [tuple(p) for p in params]))

        def set_terminated(self, run_id):
            calls.append(("terminated", run_id))

    entities = _module("mlflow.entities", Metric=lambda k, v, t, s: (k, v, s), Param=lambda k, v: (k, v))
    monkeypatch.setitem(sys.modules, "mlflow", _module("mlflow", MlflowClient=Client, entities=entities))
    monkeypatch.setitem(sys.modules, "mlflow.entities", entities)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return calls


def _log_two_steps(path, report_to):
    with MetricsLog(path, report_to=report_to, run_name="demo", config=CONFIG) as log:
        log.log(1, {"rollout/reward_mean": 0.5, "count/responses": 8})
        log.log(2, {"rollout/reward_mean": 0.75})


@pytest.mark.covers("run.report_to integration", "wandb")
def test_wandb_mirror_runs_offline_in_the_run_directory(tmp_path, fake_wandb):
    _log_two_steps(tmp_path / "metrics.jsonl", ["wandb"])
    (_, init), *rest = fake_wandb
    assert init["mode"] == "offline" and init["dir"] == str(tmp_path) and init["name"] == "demo"
    assert init["config"] == CONFIG and init["project"] == "frugalrl"
    assert rest == [
        ("log", 1, {"rollout/reward_mean": 0.5, "count/responses": 8}),
        ("log", 2, {"rollout/reward_mean": 0.75}),
        ("finish",),
    ]
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 2  # the file is written as always


def test_wandb_mode_from_the_environment_wins(tmp_path, fake_wandb, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    _log_two_steps(tmp_path / "metrics.jsonl", ["wandb"])
    assert fake_wandb[0][1]["mode"] == "online"


@pytest.mark.covers("run.report_to integration", "mlflow")
def test_mlflow_mirror_uses_a_local_sqlite_store_and_logs_params_and_steps(tmp_path, fake_mlflow):
    _log_two_steps(tmp_path / "metrics.jsonl", ["mlflow"])
    assert fake_mlflow == [
        ("client", f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"),
        ("experiment", "frugalrl"),
        ("run", "7", "demo"),
        ("batch", "r1", [], [("trainer.lr", "0.0001"), ("run.name", "demo")]),
        ("batch", "r1", [("rollout/reward_mean", 0.5, 1), ("count/responses", 8.0, 1)], []),
        ("batch", "r1", [("rollout/reward_mean", 0.75, 2)], []),
        ("terminated", "r1"),
    ]


def test_mlflow_keys_lose_the_characters_mlflow_refuses(tmp_path, fake_mlflow):
    with MetricsLog(tmp_path / "metrics.jsonl", report_to=["mlflow"], run_name="demo") as log:
        log.log(3, {"eval/avg@8": 0.5, "eval/pass@8": 0.75, "eval/L3/greedy": 0.25})
    metrics = [call[2] for call in fake_mlflow if call[0] == "batch" and call[2]]
    assert metrics == [[("eval/avg_at_8", 0.5, 3), ("eval/pass_at_8", 0.75, 3), ("eval/L3/greedy", 0.25, 3)]]


def test_mlflow_tracking_uri_from_the_environment_wins(tmp_path, fake_mlflow, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    _log_two_steps(tmp_path / "metrics.jsonl", ["mlflow"])
    assert fake_mlflow[0] == ("client", "http://tracking.example:5000")


def test_several_trackers_at_once(tmp_path, fake_wandb, fake_mlflow):
    _log_two_steps(tmp_path / "metrics.jsonl", ["wandb", "mlflow", "wandb"])  # a repeat counts once
    assert sum(call[0] == "log" for call in fake_wandb) == 2
    assert sum(call[0] == "batch" and bool(call[2]) for call in fake_mlflow) == 2


def test_a_tracker_without_its_package_is_an_error_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # find_spec then raises or returns None: not installed
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ValueError, match=r"run.report_to includes wandb, but .* pip install 'frugalrl\[wandb\]'"):
        MetricsLog(tmp_path / "metrics.jsonl", report_to=["wandb"])
    assert not (tmp_path / "metrics.jsonl").exists()
    # The config itself loads: a run's saved config.yaml must stay usable (frugalrl eval) without the extra.
    assert load_config(overrides=["run.report_to=[wandb]"]).run.report_to == ["wandb"]


def test_an_unknown_tracker_is_a_config_error_listing_the_valid_ones():
    with pytest.raises(ConfigError, match="run.report_to: unknown integration 'neptune'; valid: mlflow, tensorboard"):
        load_config(overrides=["run.report_to=[neptune]"])


def test_report_to_tensorboard_uses_the_built_in_writer(tmp_path, monkeypatch):
    import frugalrl.tracking.metrics as metrics_module

    written = []

    class Writer:
        def __init__(self, log_dir, purge_step=None):
            pass

        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(metrics_module, "_summary_writer_class", lambda: Writer)
    monkeypatch.setattr("frugalrl.tracking.integrations.missing_package", lambda name: None)
    _log_two_steps(tmp_path / "metrics.jsonl", ["tensorboard"])
    assert written == [("rollout/reward_mean", 0.5, 1), ("count/responses", 8, 1), ("rollout/reward_mean", 0.75, 2)]


# --- the real packages (where installed) ------------------------------------------------------------------


def test_real_mlflow_records_the_metrics_in_the_local_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("sqlalchemy", reason="MLflow's local store needs SQLAlchemy (in the mlflow extra)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _log_two_steps(tmp_path / "metrics.jsonl", ["mlflow"])
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        rows = db.execute("SELECT key, value, step FROM metrics ORDER BY step, key").fetchall()
        params = dict(db.execute("SELECT key, value FROM params").fetchall())
    assert rows == [("count/responses", 8.0, 1), ("rollout/reward_mean", 0.5, 1), ("rollout/reward_mean", 0.75, 2)]
    assert params == {"trainer.lr": "0.0001", "run.name": "demo"}


def test_real_wandb_writes_an_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    _log_two_steps(tmp_path / "metrics.jsonl", ["wandb"])
    (record_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    # wandb's service process finishes writing the file just after finish() returns.
    end = time.monotonic() + 60
    while b"count/responses" not in (data := record_file.read_bytes()) and time.monotonic() < end:
        time.sleep(0.2)
    assert b"rollout/reward_mean" in data and b"count/responses" in data and b"demo" in data
