"""Prompt templates: how a Problem's question becomes the text a model is given.

One registry, so a recipe names its template (``data.template: plain``) and the engine, the testbed's
warm start and evaluation all format prompts through the same function. The testbed model is trained on
`plain_prompt`; a template for chat models is registered here when one is needed.
"""

from __future__ import annotations

from collections.abc import Callable

from frugalrl.registry import Registry

PromptTemplate = Callable[[str], str]

prompt_templates: Registry[PromptTemplate] = Registry("prompt template")


@prompt_templates.register("plain")
def plain_prompt(question: str) -> str:
    """The question and a newline; the completion starts on the next line. The testbed's format."""
    return question + "\n"
