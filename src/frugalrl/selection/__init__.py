"""Which prompts and groups to train on: online selectors (chosen per step) and group filters."""

from frugalrl.selection.filters import apply_filters, correct_share, group_filters
from frugalrl.selection.selectors import PromptSelector, UniformSelector, selectors

__all__ = ["PromptSelector", "UniformSelector", "apply_filters", "correct_share", "group_filters", "selectors"]
