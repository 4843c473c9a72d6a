"""Tasks and prompt formatting: the built-in arithmetic task, file/Hub datasets, prompt templates."""

from frugalrl.data.answers import ANSWER_FORMATS, parse_answer
from frugalrl.data.arithmetic import LEVELS, iter_problems, make_problems, solution_text
from frugalrl.data.files import DatasetFormatError, load_problems, load_table, problems_from_dataset, stable_id
from frugalrl.data.reasoning_gym import load_reasoning_gym, reasoning_gym_strict_reward
from frugalrl.data.sources import data_sources, problems_of
from frugalrl.data.templates import DEFAULT_SYSTEM_PROMPT, make_prompt_formatter, plain_prompt, prompt_templates

__all__ = [
    "ANSWER_FORMATS",
    "DEFAULT_SYSTEM_PROMPT",
    "LEVELS",
    "DatasetFormatError",
    "iter_problems",
    "load_problems",
    "load_reasoning_gym",
    "load_table",
    "data_sources",
    "make_problems",
    "make_prompt_formatter",
    "parse_answer",
    "plain_prompt",
    "problems_from_dataset",
    "problems_of",
    "prompt_templates",
    "reasoning_gym_strict_reward",
    "solution_text",
    "stable_id",
]
