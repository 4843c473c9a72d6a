"""Named registries: one per extension point (advantage estimators, policy losses, rewards, ...).

A registry maps a name from a config file to a callable. Names are unique; asking for an unknown name
raises an error that lists the valid ones, so a typo in a recipe is a one-line fix.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered. Subclasses KeyError so dict-style callers still work."""

    def __str__(self) -> str:  # KeyError would print the message wrapped in quotes
        return str(self.args[0])


class Registry(Generic[T]):
    """A name → entry table for one extension point.

    Usage::

        policy_losses = Registry("policy loss")

        @policy_losses.register("clipped")
        def clipped_policy_loss(logp, old_logp, adv, mask, *, eps_low=0.2, eps_high=0.2): ...

        policy_losses.get("clipped")   # -> clipped_policy_loss
        policy_losses.get("clipd")     # UnknownNameError listing "clipped, ..."
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._needs: dict[str, Needs] = {}
        self._provides: dict[str, tuple[str, ...]] = {}

    def register(self, name: str, *, needs: Needs | None = None, provides: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator adding `entry` under `name`; a second entry with the same name is an error.

        `needs` says what the part requires of the parts chosen with it; `provides` names the capabilities
        it offers them (see `Needs`). Both are checked when a config loads, before any model is built.
        """

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            self._needs[name] = needs or NO_NEEDS
            self._provides[name] = tuple(provides)
            return entry

        return add

    def needs(self, name: str) -> Needs:
        self.get(name)
        return self._needs[name]

    def provides(self, name: str) -> tuple[str, ...]:
        self.get(name)
        return self._provides[name]

    def providers(self, capability: str) -> list[str]:
        """Names of the entries that provide `capability`."""
        return [name for name in self.names() if capability in self._provides[name]]

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.names())
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


# ---------------------------------------------------------------------------------------------------------
# What a part needs from the others, and the arguments it accepts


@dataclass(frozen=True)
class Needs:
    """What a registered part requires of the parts chosen with it, checked when a config loads.

    capabilities: each must be provided (`Registry.register(..., provides=...)`) by another chosen part,
        e.g. GAE needs "critic", rollout replay needs "staleness_weight" (a loss that weighs stale rows).
    excludes: capabilities that must not be provided by any chosen part (replay: "critic").
    min_group_size: the least G (rollout.group_size) the part works with.
    why: the reason, quoted in the error message.
    """

    capabilities: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    min_group_size: int = 1
    why: str = ""


NO_NEEDS = Needs()


def check_args(key: str, entry: Any, args: dict[str, Any], *, inputs: tuple[str, ...] = ()) -> None:
    """Reject arguments `entry` does not accept, naming `key`, the part and the valid arguments.

    A part whose arguments are a dataclass says so with an `Args` attribute: the dataclass is built, so its
    own checks run too. Otherwise the keyword-only parameters of the function (or of the class's
    `__init__`) are its arguments, minus `inputs`, the ones the engine passes itself.
    """
    spec = getattr(entry, "Args", None)
    label = getattr(entry, "__name__", str(entry))
    if spec is not None and dataclasses.is_dataclass(spec):
        valid = {f.name: _default_of(f) for f in dataclasses.fields(spec)}
        _reject_unknown(key, label, args, valid)
        try:
            spec(**args)
        except TypeError as err:
            raise ValueError(f"{key}: {err}") from None
        return
    fn = entry.__init__ if inspect.isclass(entry) else entry
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    valid = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in inputs}
    _reject_unknown(key, label, args, valid)
    for name, value in args.items():
        default = valid[name]
        if default is not None and default is not inspect.Parameter.empty and not _same_kind(default, value):
            raise ValueError(f"{key}.{name}={value!r} should be a {type(default).__name__} (default {default!r})")


def describe_args(entry: Any, *, inputs: tuple[str, ...] = ()) -> list[tuple[str, Any, str]]:
    """(argument, default, help) of every argument `entry` accepts, as `check_args` reads them."""
    spec = getattr(entry, "Args", None)
    if spec is not None and dataclasses.is_dataclass(spec):
        return [(f.name, _default_of(f), f.metadata.get("help", "")) for f in dataclasses.fields(spec)]
    fn = entry.__init__ if inspect.isclass(entry) else entry
    params = inspect.signature(fn).parameters.values()
    return [(p.name, p.default, "") for p in params if p.kind is p.KEYWORD_ONLY and p.name not in inputs]


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else inspect.Parameter.empty


def _reject_unknown(key: str, label: str, args: dict[str, Any], valid: dict[str, Any]) -> None:
    unknown = sorted(set(args) - set(valid))
    if unknown:
        listed = ", ".join(
            name if default is inspect.Parameter.empty else f"{name} (default {default!r})"
            for name, default in valid.items()
        )
        raise ValueError(f"{key} has unknown arguments {unknown} for {label}; valid: {listed or 'none'}")


def _same_kind(default: Any, value: Any) -> bool:
    """Loose type check of a config value against a default: ints are floats, floats are not bools."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))
