"""What `frugalrl selection limr` writes: the selected problems as a data file, the scores, the plot.

The data file is JSONL with the columns `frugalrl.data.files` finds by default (``id``, ``question``,
``answer``, ``level``, then every other field of the problem), so ``data.source=file data.path=FILE`` reads
back the same `Problem`s: same ids (statistics and replay key on them), levels, fields and gold answers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from frugalrl.data.answers import parse_answer
from frugalrl.tracking.atomic import atomic_write_bytes
from frugalrl.types import Problem


def problem_row(problem: Problem) -> dict[str, Any]:
    """One JSONL row that the file loader (answer_format=auto) reads back as `problem`.

    Gold answers are written as they are: a loaded answer is already parsed, and `auto` reads it back raw.
    One that `auto` would parse again (it contains ``####`` or ``\\boxed``) is an error rather than a
    silently different answer.
    """
    if parse_answer(problem.answer, "auto") != problem.answer:
        raise ValueError(
            f"problem {problem.id}: its gold answer {problem.answer!r} would be read back as "
            f"{parse_answer(problem.answer, 'auto')!r} by data.answer_format=auto; it cannot go into the data file"
        )
    clash = [key for key in problem.fields if key in ("id", "question", "answer", "level")]
    if clash:
        raise ValueError(f"problem {problem.id}: field {clash[0]!r} collides with a column of the data file")
    row: dict[str, Any] = {"id": problem.id, "question": problem.question, "answer": problem.answer}
    if problem.level is not None:
        row["level"] = problem.level
    return {**row, **problem.fields}


def write_problems(path: Path, problems: Sequence[Problem]) -> None:
    """`problems` as a JSONL data file (`data.source=file data.path=path`), written atomically."""
    text = "".join(json.dumps(problem_row(p), ensure_ascii=False) + "\n" for p in problems)
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


def plot_trajectories(
    path: Path,
    accuracy: torch.Tensor,
    reference: torch.Tensor,
    selected: Sequence[bool],
    *,
    linear: torch.Tensor | None = None,
    title: str = "",
) -> None:
    """The learning trajectories: every unselected prompt in grey, the selected ones in blue, the mean
    curve, the means of both groups (dotted) and LINEAR's reference line (if given) on top.
    accuracy: [P, K]; reference, linear: [K]."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = np.arange(1, accuracy.shape[1] + 1)
    # Jitter spreads the curves, which sit on a grid of multiples of 1/G, so that their density shows.
    jitter = np.random.default_rng(0).uniform(-0.012, 0.012, size=tuple(accuracy.shape))
    rows = accuracy.numpy() + jitter
    chosen = np.asarray(selected, dtype=bool)
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot()
    alpha = 0.4 if len(chosen) <= 50 else 0.12  # many faint lines show where the curves crowd
    for row in rows[~chosen]:
        ax.plot(epochs, row, color="0.6", alpha=alpha, linewidth=0.7)
    for row in rows[chosen]:
        ax.plot(epochs, row, color="tab:blue", alpha=min(1.0, 2 * alpha), linewidth=0.7)
    ax.plot(epochs, reference.numpy(), color="black", linewidth=2.5, label="mean over prompts r̄")
    for mask, color, name in ((chosen, "tab:blue", "selected"), (~chosen, "0.35", "not selected")):
        if mask.any():
            mean = accuracy.numpy()[mask].mean(axis=0)
            ax.plot(epochs, mean, color=color, linewidth=2, linestyle=":", label=f"mean of the {name}")
    if linear is not None:
        ax.plot(epochs, linear.numpy(), color="tab:orange", linewidth=2, linestyle="--", label="LINEAR reference")
    ax.plot([], [], color="tab:blue", label=f"selected ({int(chosen.sum())})")
    ax.plot([], [], color="0.6", label=f"not selected ({int((~chosen).sum())})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (share of correct responses)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(epochs)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
