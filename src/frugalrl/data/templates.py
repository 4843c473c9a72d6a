"""Prompt templates: how a Problem's question becomes the text a model is given.

One registry, so a recipe names its template (``data.template: plain``) and the engine, the testbed's
warm start and evaluation all format prompts through the same function. Templates are registered as
factories: `make_prompt_formatter(name, tokenizer, system_prompt=...)` builds the question -> prompt
function, since a chat template belongs to the model's tokenizer.

- `plain`: the question and a newline (the testbed model is trained on `plain_prompt`).
- `chat`: the tokenizer's own chat template (instruct models), with an optional system message and the
  assistant turn opened, so the completion is the model's answer.

A formatter's `add_special_tokens` attribute (default True) tells the rollout backend whether the
tokenizer should add its special tokens when encoding the prompt: a rendered chat template already holds
them (a second BOS would be a prompt the model never saw in training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from frugalrl.registry import Registry

PromptTemplate = Callable[[str], str]

DEFAULT_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


class TemplateFactory(Protocol):
    def __call__(self, tokenizer: Any, *, system_prompt: str) -> PromptTemplate: ...


prompt_templates: Registry[TemplateFactory] = Registry("prompt template")


def make_prompt_formatter(
    name: str, tokenizer: Any = None, *, system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> PromptTemplate:
    """The question -> prompt function of template `name` for `tokenizer` (see the module docstring)."""
    return prompt_templates.get(name)(tokenizer, system_prompt=system_prompt)


def plain_prompt(question: str) -> str:
    """The question and a newline; the completion starts on the next line. The testbed's format."""
    return question + "\n"


@prompt_templates.register("plain")
def _plain(tokenizer: Any, *, system_prompt: str) -> PromptTemplate:
    """`plain_prompt`; there is no system message in a plain prompt, so `system_prompt` is not used."""
    return plain_prompt


@dataclass(frozen=True)
class ChatPrompt:
    """The question as the user turn of the tokenizer's chat template, after `system_prompt` if not empty,
    with the assistant turn opened (`add_generation_prompt`)."""

    tokenizer: Any
    system_prompt: str
    add_special_tokens: bool = False  # the rendered template holds them already

    def __call__(self, question: str) -> str:
        messages = [{"role": "user", "content": question}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@prompt_templates.register("chat")
def _chat(tokenizer: Any, *, system_prompt: str) -> PromptTemplate:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or "this model"
        raise ValueError(
            f"data.template=chat needs a tokenizer with a chat template, and {name}'s tokenizer has none "
            "(tokenizer.chat_template is not set): use an instruct model, or data.template=plain for a base model"
        )
    prompt = ChatPrompt(tokenizer, system_prompt)
    try:
        prompt("1+1")  # a template that rejects the system role fails here, not in the middle of a run
    except Exception as err:  # noqa: BLE001 - jinja's TemplateError, or whatever the template raises
        hint = "; set data.system_prompt='' to send no system message" if system_prompt else ""
        raise ValueError(f"the model's chat template failed on a test prompt: {err}{hint}") from err
    return prompt
