"""Named registries: one per extension point (advantage estimators, policy losses, rewards, ...).

A registry maps a name from a config file to a callable. Names are unique; asking for an unknown name
raises an error that lists the valid ones, so a typo in a recipe is a one-line fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

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

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding `entry` under `name`; a second entry with the same name is an error."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return add

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
