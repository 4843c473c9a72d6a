"""Which prompts to train on: online selectors (chosen per step) and, later, group filters and offline scores."""

from frugalrl.selection.selectors import PromptSelector, UniformSelector, selectors

__all__ = ["PromptSelector", "UniformSelector", "selectors"]
