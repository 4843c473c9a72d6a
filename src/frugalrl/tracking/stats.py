"""`stats.sqlite`: per-prompt, per-step statistics, the raw material for LIMR offline selection, warm
starts of the DOTS difficulty selector, and reports.

One row per (step, prompt, source): how many responses were sampled for the prompt at that step, how many
were correct, their mean reward and total generated tokens. SQLite (stdlib) in WAL mode: each `record` is
one transaction, so a killed run keeps every step it committed, and `truncate_after` rolls the store back
to a checkpoint on resume.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS prompt_stats (
    step        INTEGER NOT NULL,
    prompt_id   TEXT    NOT NULL,
    level       INTEGER,
    samples     INTEGER NOT NULL,
    correct     INTEGER NOT NULL,
    mean_reward REAL,
    tokens      INTEGER NOT NULL,
    source      TEXT    NOT NULL DEFAULT 'train'
);
CREATE INDEX IF NOT EXISTS prompt_stats_step ON prompt_stats (step);
CREATE INDEX IF NOT EXISTS prompt_stats_prompt ON prompt_stats (prompt_id);
"""


@dataclass(frozen=True)
class PromptStat:
    """What one step saw of one prompt.

    Attributes:
        prompt_id: the `Problem.id` (stable across runs).
        samples: responses generated for the prompt at this step (G for a fresh group).
        correct: how many of them the verifier judged correct, 0 <= correct <= samples.
        mean_reward: mean reward over the `samples` responses (None if undefined).
        tokens: total generated tokens over the `samples` responses.
        level: the problem's difficulty label, if the dataset has one.
        source: where the responses came from: "train" (fresh rollouts, the default), "eval", "replay", ...
            Queries count "train" only unless told otherwise, so replayed or held-out samples do not
            inflate a prompt's pass rate.
    """

    prompt_id: str
    samples: int
    correct: int
    mean_reward: float | None
    tokens: int
    level: int | None = None
    source: str = "train"

    def __post_init__(self) -> None:
        if self.samples < 0 or not 0 <= self.correct <= self.samples:
            raise ValueError(
                f"prompt {self.prompt_id!r}: need 0 <= correct <= samples, got correct={self.correct}, "
                f"samples={self.samples}"
            )
        if self.tokens < 0:
            raise ValueError(f"prompt {self.prompt_id!r}: tokens must be >= 0, got {self.tokens}")


class StatsStore:
    """The per-prompt statistics table of one run.

    Usage::

        with StatsStore(run.stats_path) as stats:
            stats.truncate_after(resumed_step)          # only when resuming
            stats.record(step, [PromptStat("q17", samples=8, correct=3, mean_reward=0.375, tokens=412)])
            rates = stats.pass_rates()                  # {"q17": (8, 3), ...}
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path)
        # WAL: a commit is one append to the log, and a process killed at any point leaves the last
        # committed state readable. synchronous=NORMAL is durable against process kills (the data is in the
        # OS cache); only a power cut can lose the last commits, which resume truncates away anyway.
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise ValueError(
                f"{self.path} has statistics schema version {version}; this frugalrl reads version {_SCHEMA_VERSION}"
            )
        with self._conn:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def record(self, step: int, rows: Iterable[PromptStat]) -> None:
        """Add the statistics of `step` in one transaction."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"statistics step must be a non-negative int, got {step!r}")
        values = [(step, r.prompt_id, r.level, r.samples, r.correct, r.mean_reward, r.tokens, r.source) for r in rows]
        with self._conn:
            self._conn.executemany(
                "INSERT INTO prompt_stats (step, prompt_id, level, samples, correct, mean_reward, tokens, "
                "source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

    def truncate_after(self, step: int) -> None:
        """Delete every row with a step after `step` (resuming from the checkpoint at `step`)."""
        with self._conn:
            self._conn.execute("DELETE FROM prompt_stats WHERE step > ?", (step,))

    def last_step(self) -> int | None:
        """The highest recorded step (any source), or None if the store is empty."""
        return self._conn.execute("SELECT MAX(step) FROM prompt_stats").fetchone()[0]

    def pass_rates(
        self, min_step: int | None = None, max_step: int | None = None, *, source: str | None = "train"
    ) -> dict[str, tuple[int, int]]:
        """`{prompt_id: (samples, correct)}` summed over steps `min_step..max_step` (inclusive bounds, None =
        unbounded) and rows of `source` (None = every source). Prompts with no rows are absent."""
        where, params = _filter(min_step=min_step, max_step=max_step, source=source)
        rows = self._conn.execute(
            f"SELECT prompt_id, SUM(samples), SUM(correct) FROM prompt_stats {where} GROUP BY prompt_id",
            params,
        )
        return {prompt_id: (samples, correct) for prompt_id, samples, correct in rows}

    def per_epoch_accuracy(
        self, steps_per_epoch: int, *, first_step: int = 1, source: str | None = "train"
    ) -> dict[str, list[float | None]]:
        """Per prompt, the fraction of correct samples in each epoch, as LIMR's learning trajectories use.

        Epoch e covers steps `first_step + e·steps_per_epoch ... first_step + (e+1)·steps_per_epoch - 1`.
        Every list has one entry per epoch up to the last epoch with any data; an epoch in which the prompt
        was not sampled is None.
        """
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        where, params = _filter(min_step=None, max_step=None, source=source)
        earliest = self._conn.execute(f"SELECT MIN(step) FROM prompt_stats {where}", params).fetchone()[0]
        if earliest is not None and earliest < first_step:
            raise ValueError(
                f"{self.path} has statistics at step {earliest}, before first_step={first_step}; pass the "
                "step number of the first training step as first_step"
            )
        rows = self._conn.execute(
            f"SELECT prompt_id, (step - ?) / ? AS epoch, SUM(samples), SUM(correct) FROM prompt_stats "
            f"{where} GROUP BY prompt_id, epoch",
            (first_step, steps_per_epoch, *params),
        ).fetchall()
        n_epochs = max((epoch for _, epoch, _, _ in rows), default=-1) + 1
        accuracy: dict[str, list[float | None]] = {}
        for prompt_id, epoch, samples, correct in rows:
            per_epoch = accuracy.setdefault(prompt_id, [None] * n_epochs)
            per_epoch[epoch] = correct / samples if samples else None
        return accuracy

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StatsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _filter(*, min_step: int | None, max_step: int | None, source: str | None) -> tuple[str, tuple]:
    clauses, params = [], []
    for clause, value in (("step >= ?", min_step), ("step <= ?", max_step), ("source = ?", source)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
