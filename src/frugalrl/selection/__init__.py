"""Which prompts and groups to train on: online selectors (chosen per step) and group filters."""

import importlib
import pkgutil

from frugalrl.selection.dots import DotsSelector
from frugalrl.selection.embedders import embedders
from frugalrl.selection.filters import apply_filters, correct_share, group_filters
from frugalrl.selection.selectors import PromptSelector, SelectorContext, UniformSelector, selectors

# Every module of the package registers its parts when imported: a new selector, filter or embedder in a
# module of its own needs no line here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DotsSelector",
    "PromptSelector",
    "SelectorContext",
    "UniformSelector",
    "apply_filters",
    "correct_share",
    "embedders",
    "group_filters",
    "selectors",
]
