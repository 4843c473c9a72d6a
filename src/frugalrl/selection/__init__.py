"""Which prompts and groups to train on: online selectors (chosen per step) and group filters."""

from frugalrl.selection.dots import DotsSelector
from frugalrl.selection.embedders import embedders
from frugalrl.selection.filters import apply_filters, correct_share, group_filters
from frugalrl.selection.selectors import PromptSelector, SelectorContext, UniformSelector, selectors

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
