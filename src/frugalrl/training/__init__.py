"""Running a config: build its parts (`build`), train (`trainer`), evaluate held-out (`evaluation`).

The only package below the command line that reads a `Config`; the parts it builds (engine, selection,
replay, algos, rewards, data) take plain arguments.
"""

from frugalrl.training.trainer import Trainer, train

__all__ = ["Trainer", "train"]
