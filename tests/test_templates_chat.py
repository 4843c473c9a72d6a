"""The chat prompt template (data.template=chat): the tokenizer's own template, a configurable system
prompt, encoded without a second BOS; a clear error for a tokenizer without a template."""

import pytest
import torch

from frugalrl.config import ConfigError, load_config
from frugalrl.data import DEFAULT_SYSTEM_PROMPT, make_prompt_formatter, plain_prompt
from frugalrl.engine.policy import Policy
from frugalrl.engine.rollout import HFGenerateBackend, SamplingParams
from frugalrl.testbed import build_model, build_tokenizer
from frugalrl.types import Problem

# A tiny chat template in the common shape: <bos>, one "[role]" line per message, then the assistant's turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)
# One that refuses system messages, as some model families' templates do.
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
)


@pytest.fixture
def chat_tokenizer():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.mark.covers("prompt template", "chat")
def test_chat_template_renders_system_and_user_turns_and_opens_the_assistant_turn(chat_tokenizer):
    fmt = make_prompt_formatter("chat", chat_tokenizer, system_prompt="Box it.")
    assert fmt("What is 1+2?") == "<bos>[system] Box it.\n[user] What is 1+2?\n[assistant] "
    no_system = make_prompt_formatter("chat", chat_tokenizer, system_prompt="")
    assert no_system("What is 1+2?") == "<bos>[user] What is 1+2?\n[assistant] "
    assert fmt.add_special_tokens is False  # the template wrote <bos> itself


def test_plain_template_ignores_the_tokenizer_and_the_system_prompt():
    assert make_prompt_formatter("plain", None, system_prompt="ignored") is plain_prompt


def test_default_system_prompt_asks_for_a_boxed_answer(chat_tokenizer):
    assert "\\boxed{}" in DEFAULT_SYSTEM_PROMPT
    assert load_config(overrides=["data.template=chat"]).data.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert make_prompt_formatter("chat", chat_tokenizer)("x").startswith("<bos>[system] " + DEFAULT_SYSTEM_PROMPT)


def test_chat_template_without_one_on_the_tokenizer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"template=chat needs a tokenizer with a chat template.*data.template=plain"):
        make_prompt_formatter("chat", build_tokenizer())


def test_chat_template_that_rejects_the_system_role_says_how_to_drop_it():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    with pytest.raises(ValueError, match=r"System role not supported; set data.system_prompt=''"):
        make_prompt_formatter("chat", tokenizer, system_prompt="Box it.")
    assert make_prompt_formatter("chat", tokenizer, system_prompt="")("q") == "[user] q\n[assistant] "


def test_unknown_template_is_a_config_error_listing_the_templates():
    with pytest.raises(ConfigError, match="unknown prompt template 'chatml'; valid names: chat, plain"):
        load_config(overrides=["data.template=chatml"])


def test_rollout_encodes_a_chat_prompt_with_one_bos(chat_tokenizer):
    torch.manual_seed(0)
    policy = Policy(build_model(chat_tokenizer, preset="micro", seed=0), chat_tokenizer)
    fmt = make_prompt_formatter("chat", chat_tokenizer, system_prompt="")
    backend = HFGenerateBackend(policy.model, chat_tokenizer, format_prompt=fmt, token_budget=300)
    batch = backend.generate([Problem(id="p", question="1+2", answer="3")], SamplingParams(n=1, max_new_tokens=3))
    ids = batch.prompt_ids[0][batch.prompt_mask[0]].tolist()
    text = "[user] 1+2\n[assistant] "
    # Hand-derived: one <bos> from the template, then one token per character (the testbed's tokenizer).
    assert ids == [chat_tokenizer.bos_token_id] + chat_tokenizer.convert_tokens_to_ids(list(text))
