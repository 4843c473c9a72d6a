"""`metrics.jsonl`: one JSON object per step, appended and flushed as the run goes.

Format of one line::

    {"step": 12, "rollout/reward_mean": 0.4375, "count/responses": 768, "loss/kl": "NaN"}

- `step` is an int; records are appended in non-decreasing step order. Several records may share a step
  (e.g. an evaluation logged separately from the training metrics of that step); `merge_steps` joins them.
- Every other key is `<namespace>/<name>` (namespaces in the `frugalrl.tracking` docstring). Ints stay ints
  (counters), everything else is a float. A metric absent from a record was not measured at that step.
- Non-finite floats are written as the JSON strings "NaN", "Infinity" and "-Infinity" (strict JSON has no
  literal for them; a string, unlike null, keeps which one it was) and `read_metrics` turns them back into
  floats. Python's own non-standard `NaN` literals are accepted on read too.
- A run killed mid-write leaves at most one unterminated last line; `read_metrics` drops it if it does not
  parse, and `MetricsLog` repairs it before appending, so nothing else is lost.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, SupportsFloat

from frugalrl.tracking.atomic import atomic_write_text
from frugalrl.tracking.integrations import Tracker, check_report_to, trackers

Record = dict[str, Any]
"""One metrics record: {"step": int, "<namespace>/<name>": float | int, ...}."""

NAMESPACES = ("loss", "adv", "rollout", "data", "replay", "select", "time", "eval", "count")
"""The documented metric namespaces (see the package docstring); keys outside them are allowed."""

_ENCODE_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}
_DECODE_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

_tensorboard_warned = False


def encode_value(value: float | int) -> float | int | str:
    """A metric value as written to JSON: non-finite floats become "NaN" / "Infinity" / "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else _ENCODE_NONFINITE[value]
    return value


def decode_value(value: Any) -> Any:
    """Inverse of `encode_value`; other values pass through unchanged."""
    if isinstance(value, str):
        return _DECODE_NONFINITE.get(value, value)
    return value


def read_metrics(path: Path | str) -> list[Record]:
    """All records of a metrics file, in file order, with non-finite values decoded.

    An unterminated last line that does not parse (the write in flight when the run was killed) is
    dropped. Any other unparsable line is an error naming the line, since it means the file was damaged.
    """
    path = Path(path)
    return _parse(path.read_text(encoding="utf-8"), path)


def _parse(text: str, path: Path) -> list[Record]:
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # unterminated: the last file line has no "\n" after it
                continue
            raise ValueError(f"{path}:{number}: not a JSON metrics record ({err}): {line[:80]!r}") from None
        step = raw.get("step") if isinstance(raw, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"{path}:{number}: a metrics record needs an integer 'step': {line[:80]!r}")
        records.append({key: decode_value(value) for key, value in raw.items()})
    return records


def merge_steps(records: Iterable[Record]) -> list[Record]:
    """One record per step, sorted by step; where records share a step, later values win."""
    merged: dict[int, Record] = {}
    for record in records:
        merged.setdefault(record["step"], {}).update(record)
    return [merged[step] for step in sorted(merged)]


class MetricsLog:
    """Appends one record per step to `metrics.jsonl`, flushed on every write.

    Usage::

        with MetricsLog(run.metrics_path, tensorboard=cfg.tensorboard) as log:
            log.truncate_after(resumed_step)      # only when resuming from a checkpoint
            log.log(step, {"rollout/reward_mean": 0.41, "count/responses": 768})

    Values may be Python or NumPy numbers or 0-d tensors (converted with `float`; ints stay ints); a None
    value is left out of the record. `fsync=True` also survives power loss, at one disk sync per step.

    `report_to` mirrors every record to the named trackers (tensorboard, wandb, mlflow; see
    `frugalrl.tracking.integrations`), each created at the first record; a name whose package is not
    installed is a ValueError here, before the run starts. `run_name` and `config` (a nested dict) describe
    the run to W&B and MLflow. The older `tensorboard=True` means `report_to=["tensorboard"]`, except that a
    missing tensorboard package only warns once and logging carries on.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        tensorboard: bool = False,
        report_to: Iterable[str] = (),
        run_name: str = "run",
        config: Mapping[str, Any] | None = None,
        fsync: bool = False,
    ) -> None:
        report_to = list(dict.fromkeys(report_to))
        check_report_to(report_to)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._last_step: int | None = None
        self._tensorboard = tensorboard or "tensorboard" in report_to
        self._external = [name for name in report_to if name != "tensorboard"]
        self._trackers: dict[str, Tracker] = {}
        self._run_name, self._config = run_name, dict(config or {})
        self._writer: Any = None
        self._tb_purge_step: int | None = None
        if self.path.exists():
            self._repair()
        self._file = open(self.path, "a", encoding="utf-8")  # closed in close()

    @property
    def last_step(self) -> int | None:
        """The highest step in the file, or None if it is empty."""
        return self._last_step

    def log(self, step: int, metrics: Mapping[str, SupportsFloat | None]) -> None:
        """Append the record `{"step": step, **metrics}` and flush it."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"metrics step must be a non-negative int, got {step!r}")
        if self._last_step is not None and step < self._last_step:
            raise ValueError(
                f"metrics step {step} is before the last logged step {self._last_step} in {self.path}; "
                "when resuming, call truncate_after(<checkpoint step>) first"
            )
        record: Record = {"step": step}
        for key, value in metrics.items():
            _check_key(key)
            if value is not None:
                record[key] = _number(key, value)
        line = json.dumps({k: encode_value(v) for k, v in record.items()}, allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._last_step = step
        self._mirror(record)

    def truncate_after(self, step: int) -> None:
        """Keep only the records with `step <= step` (resuming from the checkpoint at `step`).

        The file is rewritten atomically. TensorBoard events of the discarded steps are purged by the
        next writer (SummaryWriter's `purge_step`).
        """
        kept = [r for r in read_metrics(self.path) if r["step"] <= step]
        self._file.close()
        atomic_write_text(self.path, _dumps(kept))
        self._file = open(self.path, "a", encoding="utf-8")
        self._last_step = max((r["step"] for r in kept), default=None)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._tb_purge_step = step + 1

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for tracker in self._trackers.values():
            tracker.close()
        self._trackers = {}

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repair(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        records = _parse(text, self.path)
        if text and not text.endswith("\n"):  # a killed write: appending would glue onto it
            atomic_write_text(self.path, _dumps(records))
        if records:
            self._last_step = max(r["step"] for r in records)
            self._tb_purge_step = self._last_step + 1

    def _mirror(self, record: Record) -> None:
        for name in self._external:
            if name not in self._trackers:
                self._trackers[name] = trackers.get(name)(
                    self.path.parent, run_name=self._run_name, config=self._config, purge_step=self._tb_purge_step
                )
            self._trackers[name].log(record)
        if not self._tensorboard:
            return
        if self._writer is None:
            writer_class = _summary_writer_class()
            if writer_class is None:
                self._tensorboard = False
                return
            self._writer = writer_class(log_dir=str(self.path.parent), purge_step=self._tb_purge_step)
        step = record["step"]
        for key, value in record.items():
            if key != "step":
                self._writer.add_scalar(key, value, step)
        self._writer.flush()


def _summary_writer_class() -> Any:
    """torch's SummaryWriter, or None (with a one-time warning) if the tensorboard extra is missing."""
    global _tensorboard_warned
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _tensorboard_warned:
            _tensorboard_warned = True
            warnings.warn(
                "TensorBoard logging is off: the tensorboard package is not installed "
                "(pip install 'frugalrl[tensorboard]'); metrics.jsonl is written as usual",
                RuntimeWarning,
                stacklevel=4,
            )
        return None
    return SummaryWriter


def _dumps(records: Iterable[Record]) -> str:
    return "".join(json.dumps({k: encode_value(v) for k, v in r.items()}, allow_nan=False) + "\n" for r in records)


def _check_key(key: object) -> None:
    if not isinstance(key, str) or len(parts := key.split("/")) < 2 or not all(parts):
        raise ValueError(
            f"metric key {key!r} is not '<namespace>/<name>' (e.g. 'rollout/reward_mean'); "
            f"documented namespaces: {', '.join(NAMESPACES)}"
        )


def _number(key: str, value: SupportsFloat) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):  # Python and NumPy ints: counters stay exact
        return int(value)
    try:
        return float(value)  # floats, NumPy floats, 0-d tensors
    except (TypeError, ValueError) as err:
        raise TypeError(f"metric {key!r} must be a number or 0-d tensor, not {type(value).__name__}") from err
