"""Character-level tokenizer for the testbed model, built with `tokenizers` and wrapped for `transformers`.

Every printable ASCII character and the newline is one token, so any arithmetic question and solution
round-trips exactly and the vocabulary stays at 100 entries (4 specials + 96 characters). `tokenizer(text)`
prepends ``<bos>``, which gives left-padded batches a fixed first real token; ``<eos>`` ends a completion
and is appended by whoever builds training sequences, as for Llama tokenizers.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0..3
CHARS = "\n" + "".join(chr(c) for c in range(32, 127))  # newline + printable ASCII (space..tilde)
assert set(CHARS) <= set(string.printable)


def build_tokenizer(*, model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """A fresh character tokenizer (deterministic: same vocabulary and ids on every call)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(CHARS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # `[\s\S]` rather than `.` so that the newline is a character too; every match is its own piece.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()  # join pieces with no separator
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    # Left padding by default: this tokenizer mostly feeds `generate`, where prompts must end flush right.
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
