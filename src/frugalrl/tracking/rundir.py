"""The run directory: where every file of one training run lives (DESIGN.md, "Run directory")."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from frugalrl.tracking.atomic import COMMIT_MARKER, is_committed

_STEP_DIR = re.compile(r"step_(\d+)")


class RunDir:
    """Paths of one run, `runs/<name>/`; creating it creates the directory, `checkpoints/` and `plots/`.

    Opening an existing run directory is the normal way to resume; nothing is deleted. The TensorBoard
    mirror of the metrics (if enabled) writes its event files into `path` itself, so
    `tensorboard --logdir runs/` shows one run per directory name.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        for directory in (self.path, self.checkpoints_dir, self.plots_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        """The fully resolved config, `config.yaml`."""
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        """One JSON object per step, `metrics.jsonl` (see `MetricsLog`)."""
        return self.path / "metrics.jsonl"

    @property
    def stats_path(self) -> Path:
        """Per-prompt, per-step statistics, `stats.sqlite` (see `StatsStore`)."""
        return self.path / "stats.sqlite"

    @property
    def report_path(self) -> Path:
        """The human-readable summary, `report.md` (see `write_report`)."""
        return self.path / "report.md"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path

    def checkpoint_dir(self, step: int) -> Path:
        """`checkpoints/step_N`. Write it with `atomic_directory(run.checkpoint_dir(step))`."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"checkpoint step must be a non-negative int, got {step!r}")
        return self.checkpoints_dir / f"step_{step}"

    def checkpoint_steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending.

        Temporary directories (`.step_N.tmp`, a write in flight or killed) are ignored. A `step_N`
        directory without the commit marker was not written through `atomic_directory` (or was copied
        without it); it is skipped with a warning rather than trusted, since it may be half written.
        """
        steps = []
        for entry in self.checkpoints_dir.iterdir():
            match = _STEP_DIR.fullmatch(entry.name)
            if match is None or not entry.is_dir():
                continue
            if is_committed(entry):
                steps.append(int(match.group(1)))
            else:
                warnings.warn(
                    f"skipping checkpoint {entry}: it has no {COMMIT_MARKER} marker, so it may be incomplete "
                    "(checkpoints must be written with frugalrl.tracking.atomic_directory)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return sorted(steps)

    def latest_checkpoint(self) -> Path | None:
        """The complete checkpoint with the highest step, or None if there is none."""
        steps = self.checkpoint_steps()
        return self.checkpoint_dir(steps[-1]) if steps else None
