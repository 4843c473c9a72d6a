"""Tiny causal LMs built from a `transformers` config, so that every HF code path (generate, save/load,
`AutoModelForCausalLM`) is the one a real model takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

# "qwen2" caveat: transformers 5 forces its own Qwen2Tokenizer when AutoTokenizer loads a directory whose
# config says qwen2, replacing our character pre-tokenizer; load the tokenizer of such a directory with
# PreTrainedTokenizerFast.from_pretrained. The default (llama) loads correctly through AutoTokenizer.
ARCHITECTURES = {"llama": LlamaConfig, "qwen2": Qwen2Config}


@dataclass(frozen=True)
class ModelSize:
    """Shape of a testbed model (embeddings are always tied: they would otherwise be a quarter of it)."""

    hidden: int
    layers: int
    heads: int
    mlp: int


MODEL_PRESETS: dict[str, ModelSize] = {
    "micro": ModelSize(hidden=32, layers=2, heads=2, mlp=64),  # ~24k parameters: tests only
    "small": ModelSize(hidden=128, layers=4, heads=4, mlp=512),  # ~1.06M: the default testbed model
    "medium": ModelSize(hidden=256, layers=6, heads=8, mlp=1024),  # ~6.3M: a stronger base, ~6x slower
}


def model_config(
    tokenizer: PreTrainedTokenizerBase, *, preset: str = "small", arch: str = "llama", max_positions: int = 256
) -> PretrainedConfig:
    """HF config for a `preset`-sized model of architecture `arch` over `tokenizer`'s vocabulary."""
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid presets: {', '.join(MODEL_PRESETS)}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; valid architectures: {', '.join(ARCHITECTURES)}")
    size = MODEL_PRESETS[preset]
    return ARCHITECTURES[arch](
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        intermediate_size=size.mlp,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(
    tokenizer: PreTrainedTokenizerBase, *, preset: str = "small", arch: str = "llama", seed: int = 0
) -> PreTrainedModel:
    """A freshly initialised model (weights determined by `seed`), in float32."""
    config = model_config(tokenizer, preset=preset, arch=arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def n_params(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
