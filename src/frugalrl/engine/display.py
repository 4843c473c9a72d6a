"""The live progress display of a training run (rich), and the evaluation lines printed under it."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressDisplay:
    """Step counter with ETA, last reward and accuracy, and the latest held-out accuracy."""

    def __init__(
        self,
        total_steps: int,
        start: int,
        *,
        time_limit: float = 0.0,
        enabled: bool = True,
        console: Console | None = None,
    ):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        # A run bounded by training time advances the bar by seconds, so its ETA means something.
        self.time_limit = time_limit
        unit = "[bold]train time" if time_limit else "[bold]step"
        self.progress = Progress(
            TextColumn(unit),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not enabled,
        )
        total = time_limit or total_steps
        self.task = self.progress.add_task("train", total=total, completed=0 if time_limit else start, status="")
        self.held_out = ""

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, step: int, metrics: dict[str, float], train_elapsed: float) -> None:
        status = (
            f"step {step}  reward {metrics.get('rollout/reward_mean', float('nan')):.3f}  "
            f"acc {metrics.get('rollout/accuracy', float('nan')):.3f}{self.held_out}"
        )
        completed = min(train_elapsed, self.time_limit) if self.time_limit else step
        self.progress.update(self.task, completed=completed, status=status)

    def evaluated(self, step: int, metrics: dict[str, float], protocol: str) -> None:
        headline = {k.removeprefix("eval/"): v for k, v in metrics.items() if k.count("/") == 1}
        text = "  ".join(f"{k} {v:.3f}" for k, v in headline.items())
        first = next(iter(headline.items()), None)
        self.held_out = f"  held-out {first[0]} {first[1]:.3f}" if first else ""
        if self.enabled:
            self.progress.console.print(f"[cyan]eval[/] step {step}: {text}  ({protocol})")
