"""Checks that apply to every config field alike, and the reading of a recipe file.

`check_bounds` (run by `Config.__post_init__`) walks every section of a config and rejects a number that is
not finite or falls outside the bounds its field declares with `_f(..., ge=, gt=, le=, lt=)`. A section
adds only the checks that relate its fields to each other.
"""

from __future__ import annotations

import math
import operator
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from frugalrl.errors import ConfigError

_OPS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
DEVICE_PATTERN = re.compile(r"cpu|auto|mps|cuda(:\d+)?")


def check_bounds(config: Any) -> None:
    """Every number in every section is finite and within its field's declared bounds; raises ValueError
    naming the key, the value and the allowed range."""
    for section in fields(config):
        part = getattr(config, section.name)
        for f in fields(section.default_factory):
            key, value = f"{section.name}.{f.name}", getattr(part, f.name)
            for number in _numbers(value):
                bounds = f.metadata.get("bounds", {})
                if not math.isfinite(number):
                    raise ValueError(f"{key} must be a finite number, got {_show(value)}")
                if not all(_OPS[op](number, bound) for op, bound in bounds.items()):
                    raise ValueError(f"{key} must be {_range_text(bounds)}, got {_show(value)}")


def _numbers(value: Any) -> list[float]:
    """The numbers in a field's value: itself, a list's elements, or a dict's values (a part's `*_args`)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, Mapping):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [n for v in value for n in _numbers(v)]
    return []


def _show(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return str(list(value))
    if isinstance(value, Mapping):
        return str(dict(value))
    return str(value)


def _range_text(bounds: dict[str, float]) -> str:
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    assert high is not None
    return f"{'<=' if high[0] == ']' else '<'} {high[1]}"


def check_run_name(name: str, run_dir: str | None) -> None:
    """`run.name` names a directory under runs/: a plain file name, so no run writes outside runs/."""
    bad = (
        not name
        or name in (".", "..")
        or any(sep in name for sep in ("/", "\\", "\0"))
        or any(ord(ch) < 32 for ch in name)
        or len(name) > 200
    )
    if bad:
        raise ValueError(
            f"run.name={name!r} must be a plain name (no '/', '\\', '..', control characters; at most 200 "
            "characters); set run.dir to put the run directory somewhere else"
        )
    if run_dir is not None and not str(run_dir).strip():
        raise ValueError("run.dir is empty; leave it unset (runs/<run.name>) or give a directory")


def check_device(device: str) -> None:
    if not DEVICE_PATTERN.fullmatch(device):
        raise ValueError(f"run.device={device!r} is not one of: cpu, cuda, cuda:N, mps, auto")


def check_threads(threads: int) -> int:
    """`threads`, capped at this machine's CPU cores with a warning (torch aborts on absurd counts)."""
    cores = os.cpu_count() or 1
    if threads > cores:
        warnings.warn(
            f"run.threads={threads} is more than this machine's {cores} CPU cores; using {cores}", stacklevel=3
        )
        return cores
    return threads


def load_recipe_file(path: Path, *, sections: list[str]) -> Any:
    """The YAML recipe at `path` as an OmegaConf mapping; a file that is missing, unreadable, not YAML, not
    a mapping, or has a section that is not a mapping raises a ConfigError naming the file."""
    import yaml
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    try:
        parsed = yaml.safe_load(text)  # its type first: OmegaConf reads a bare scalar as a key or fails
        recipe = OmegaConf.create(text) if isinstance(parsed, dict) else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"config file {path} cannot be read: {str(err).splitlines()[0]}") from None
    if parsed is None:
        return OmegaConf.create({})  # an empty recipe: the defaults
    if not isinstance(recipe, DictConfig):
        raise ConfigError(
            f"config file {path} holds a value of type {type(parsed).__name__} ({str(parsed)[:40]!r}), not a "
            "mapping of sections; write it as `trainer: {lr: 1.0e-4}` (one section per top-level key)"
        )
    for key, value in parsed.items():
        if key in sections and value is not None and not isinstance(value, dict):
            raise ConfigError(
                f"config file {path}: section '{key}' holds {repr(value)[:60]}, not a mapping of keys; "
                f"write it as `{key}:` followed by indented `key: value` lines"
            )
    parent = parsed.get("inherit")
    if parent is not None and not isinstance(parent, str):
        raise ConfigError(f"config file {path}: inherit must be a file name, got {parent!r}")
    return recipe
