"""The built-in testbed: a ~1M-parameter causal LM that frugalrl trains itself on procedural arithmetic.

``ensure_base()`` returns a directory that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load: the base shipped with the package, or one built and cached from a
custom `BaseSpec`. Prompts are formatted with `frugalrl.data.templates.plain_prompt`.
"""

from frugalrl.testbed.base import SHIPPED_BASE, build_base, cache_root, ensure_base, read_recipe_record
from frugalrl.testbed.base_spec import BaseSpec, SFTPhase
from frugalrl.testbed.model import MODEL_PRESETS, build_model, model_config, n_params
from frugalrl.testbed.tokenizer import build_tokenizer

__all__ = [
    "MODEL_PRESETS",
    "SHIPPED_BASE",
    "BaseSpec",
    "SFTPhase",
    "build_base",
    "build_model",
    "build_tokenizer",
    "cache_root",
    "ensure_base",
    "model_config",
    "n_params",
    "read_recipe_record",
]
