"""User-facing errors and the command line's error boundary.

Every failure a user can fix (a config value, a data file, a model directory, a checkpoint, a resume, the
file system) raises a `UserError`: its message is one line naming the key, file, row or path at fault, and
what to do about it. The CLI (`error_boundary`) prints that line and exits with code 2; a traceback is
printed only with ``--debug`` (or ``FRUGALRL_DEBUG=1``). Ctrl-C during training exits with code 130 and says
where the run stopped and how to resume it.

Each subclass also derives from the built-in exception that code calling frugalrl as a library would
naturally catch (`ValueError` for bad values, `FileExistsError` for an existing run, ...).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C
EXIT_INTERNAL_ERROR = 1


class UserError(Exception):
    """A failure the user can fix. `str(err)` is the message; `fix`, if given, is printed on a second line."""

    label = "error"

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if self.fix is None else f"{self.message}; {self.fix}"


class ConfigError(UserError, ValueError):
    """A recipe, override or config value that cannot be used; the message names the key and the fix."""

    label = "config error"


class DataError(UserError, ValueError):
    """A data file or dataset that cannot be read or used; the message names the file and row."""

    label = "data error"


class ModelError(UserError, ValueError):
    """A model path, directory or file that cannot be loaded; the message names the path."""

    label = "model error"


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, incomplete or does not match the run."""

    label = "checkpoint error"


class RunExistsError(UserError, FileExistsError):
    """Starting a run in a directory that already holds one."""

    label = "run error"


class ResumeError(UserError, ValueError):
    """`--resume` cannot continue this run (nothing to resume, or a changed config)."""

    label = "resume error"


class NoCheckpointError(ResumeError, FileNotFoundError):
    """`--resume` of a run directory that holds no usable checkpoint."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with where the run stood: the last finished step and the last checkpoint."""

    def __init__(self, step: int, checkpoint_step: int | None) -> None:
        super().__init__(step, checkpoint_step)
        self.step, self.checkpoint_step = step, checkpoint_step

    def __str__(self) -> str:
        if self.checkpoint_step is None:
            return f"interrupted at step {self.step}, before the first checkpoint; run the same command to start over"
        return f"interrupted at step {self.step} (last checkpoint: step {self.checkpoint_step}); resume with --resume"


def _one_line(text: str, width: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 3] + "..."


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception of a chain (`datasets` wraps the parser's error in two of its own)."""
    seen = {id(err)}
    while (inner := err.__cause__ or err.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        err = inner
    return err


def describe_exception(err: BaseException) -> str:
    """`TypeName: first line of the message`, from the root of the chain, on one line."""
    cause = root_cause(err)
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return _one_line(f"{type(cause).__name__}: {text}" if text else type(cause).__name__, 300)


def looks_like_local_path(name: str) -> bool:
    """True if `name` reads as a file system path rather than a Hub id (`org/name` or `name`).

    Hub ids have at most one `/`, never start with `.`, `/` or `~`, and never end with `/`; a name that
    exists on disk is local whatever its shape.
    """
    if not name:
        return True
    if Path(name).expanduser().exists():
        return True
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.endswith(("/", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or bool(re.match(r"^[A-Za-z]:", name))  # C:\ on Windows
    )


_ENOSPC_HINT = "free some disk space (or set run.dir on another disk), then resume with --resume"


def _os_error_message(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"no space left on the device{where}; {_ENOSPC_HINT}"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}; choose a writable run.dir or fix the permissions"
    return _one_line(f"{err.strerror or err}{where}")


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """(``--debug`` given or ``FRUGALRL_DEBUG`` set, argv without ``--debug``): the flag works anywhere."""
    debug = "--debug" in argv or os.environ.get("FRUGALRL_DEBUG", "") not in ("", "0")
    return debug, [a for a in argv if a != "--debug"]


@contextlib.contextmanager
def error_boundary(console: Any, *, debug: bool = False) -> Iterator[None]:
    """Turn a failure into one printed line and an exit code: 2 for anything the user can fix (a
    `UserError`, a file-system error, running out of memory), 130 for Ctrl-C, 1 for a frugalrl bug.
    With `debug`, user errors and bugs propagate with their traceback."""
    from rich.markup import escape  # a message holding [brackets] must print them, not read them as markup

    def say(label: str, message: str) -> None:
        console.print(f"[red]{label}:[/] {escape(message)}", soft_wrap=True)

    try:
        yield
    except SystemExit:
        raise
    except KeyboardInterrupt as err:
        if debug:
            raise
        message = str(err) if isinstance(err, Interrupted) else "interrupted"
        console.print(f"[red]{escape(message)}[/]", soft_wrap=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except UserError as err:
        if debug:
            raise
        say(err.label, _one_line(err.message, 1000))
        if err.fix:
            console.print(f"  fix: {escape(err.fix)}", soft_wrap=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    except OSError as err:
        if debug:
            raise
        say("I/O error", _os_error_message(err))
        raise SystemExit(EXIT_USER_ERROR) from None
    except MemoryError:
        if debug:
            raise
        say("out of memory", "lower rollout.token_budget, trainer.micro_batch_size or trainer.prompts_per_step")
        raise SystemExit(EXIT_USER_ERROR) from None
    except Exception as err:
        if debug:
            raise
        if "out of memory" in str(err).lower():  # torch.OutOfMemoryError is a RuntimeError
            say("out of memory", "lower rollout.token_budget, trainer.micro_batch_size or trainer.prompts_per_step")
            raise SystemExit(EXIT_USER_ERROR) from None
        say("internal error", f"{describe_exception(err)} (a frugalrl bug: rerun with --debug for the traceback)")
        raise SystemExit(EXIT_INTERNAL_ERROR) from None
