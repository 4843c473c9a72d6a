"""Mirrors of `metrics.jsonl` to experiment trackers: `run.report_to: [tensorboard, wandb, mlflow]`.

metrics.jsonl is always written and stays the record of the run; a tracker gets a copy of every record as
it is logged. Each tracker is behind its extra (`pip install 'frugalrl[wandb]'`), imported only when a run
names it, and works without network by default:

- `tensorboard`: event files in the run directory (`tensorboard --logdir runs/`), written by `MetricsLog`
  itself. On resume the events after the checkpoint are purged, like metrics.jsonl.
- `wandb`: a W&B run in `<run dir>/wandb`, **offline** unless `WANDB_MODE` says otherwise (`wandb sync
  <run dir>/wandb/offline-run-*` uploads it later; `WANDB_MODE=online` logs live). Named after
  `run.name`, with the resolved config attached.
- `mlflow`: an MLflow run under the experiment "frugalrl" in the local SQLite store `<run dir>/mlflow.db`
  unless `MLFLOW_TRACKING_URI` names another (`mlflow ui --backend-store-uri sqlite:///<run dir>/mlflow.db`),
  with the config's values as parameters. MLflow refuses `@` in a metric name: `eval/avg@8` is logged as
  `eval/avg_at_8`.

A resumed run starts a new W&B / MLflow run; their steps after the checkpoint are not rewritten (neither
service can delete logged steps), so use metrics.jsonl, or the newer run, for the steps after a resume.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from frugalrl.registry import Registry


class Tracker(Protocol):
    """Receives every metrics record ({"step": int, "<namespace>/<name>": number, ...}) as it is logged."""

    def log(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class TrackerFactory(Protocol):
    def __call__(
        self, log_dir: Path, *, run_name: str, config: Mapping[str, Any], purge_step: int | None
    ) -> Tracker: ...


trackers: Registry[TrackerFactory] = Registry("run.report_to integration")
"""The external trackers; TensorBoard is built into `MetricsLog` (it also purges on resume)."""

# The package each tracker imports, and the extra that installs it.
REQUIREMENTS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


def report_to_names() -> list[str]:
    """Every valid entry of run.report_to."""
    return sorted(["tensorboard", *trackers.names()])


def check_report_to(names: list[str], *, installed: bool = True) -> None:
    """ValueError naming the entry if one of `names` is unknown or (with `installed`) its package is missing.

    The config checks names only: a run's saved config must still load (for `frugalrl eval`, say) where
    its trackers are not installed; the metrics log checks the packages when the run starts.
    """
    for name in names:
        if name not in report_to_names():
            raise ValueError(f"run.report_to: unknown integration {name!r}; valid: {', '.join(report_to_names())}")
        problem = missing_package(name) if installed else None
        if problem:
            raise ValueError(problem)


def missing_package(name: str) -> str | None:
    """An actionable message if the package tracker `name` needs is not installed, else None."""
    package, extra = REQUIREMENTS[name]
    if importlib.util.find_spec(package) is not None:
        return None
    return (
        f"run.report_to includes {name}, but the {package} package is not installed: "
        f"pip install 'frugalrl[{extra}]', or remove {name} from run.report_to"
    )


class WandbTracker:
    def __init__(self, log_dir: Path, *, run_name: str, config: Mapping[str, Any], purge_step: int | None) -> None:
        import wandb

        mode = os.environ.get("WANDB_MODE", "offline")  # no network unless asked for
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "frugalrl"),
            name=run_name,
            dir=str(log_dir),
            config=dict(config),
            mode=mode,
            reinit="create_new",
        )

    def log(self, record: Mapping[str, Any]) -> None:
        self._run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self) -> None:
        self._run.finish()


class MlflowTracker:
    def __init__(self, log_dir: Path, *, run_name: str, config: Mapping[str, Any], purge_step: int | None) -> None:
        import mlflow

        # MLflow 3 keeps its file store read-mostly; its own recommendation for a local store is SQLite.
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(log_dir / 'mlflow.db').resolve()}"
        self._client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = self._client.get_experiment_by_name("frugalrl")
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment("frugalrl")
        self._run_id = self._client.create_run(experiment_id, run_name=run_name).info.run_id
        from mlflow.entities import Param

        params = [Param(key, str(value)[:500]) for key, value in _flatten(config).items()]  # MLflow caps values
        for i in range(0, len(params), 100):  # and a batch at 100 parameters
            self._client.log_batch(self._run_id, params=params[i : i + 100])

    def log(self, record: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        step, stamp = record["step"], _millis()
        metrics = [Metric(mlflow_key(k), float(v), stamp, step) for k, v in record.items() if k != "step"]
        self._client.log_batch(self._run_id, metrics=metrics)

    def close(self) -> None:
        self._client.set_terminated(self._run_id)


trackers.register("wandb")(WandbTracker)
trackers.register("mlflow")(MlflowTracker)


_MLFLOW_INVALID = re.compile(r"[^A-Za-z0-9_\-. :/]")


def mlflow_key(key: str) -> str:
    """A metric key as MLflow accepts it: `eval/avg@8` -> `eval/avg_at_8`, other disallowed characters -> `_`."""
    return _MLFLOW_INVALID.sub("_", key.replace("@", "_at_"))


def _millis() -> int:
    import time

    return int(time.time() * 1000)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
