"""Padded against packed update forwards (`trainer.packing`): seconds per forward + backward on one batch.

The batch is sampled from the model itself (testbed by default), so its lengths are the ones training sees.

    python benchmarks/packed_update.py --rows 256 --micro 64 --repeats 3
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="testbed")
    parser.add_argument("--rows", type=int, default=256, help="responses in the batch (B·G)")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--micro", type=int, default=64, help="rows per forward (trainer.micro_batch_size)")
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from frugalrl.data import make_problems, plain_prompt
    from frugalrl.engine.policy import load_policy, pack_rows, response_logprobs
    from frugalrl.engine.rollout import CompactSamplingBackend, SamplingParams
    from frugalrl.engine.update import _by_length, micro_chunks
    from frugalrl.training.build import resolve_model_path

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy = load_policy(resolve_model_path(args.model))
    policy.model.eval()
    backend = CompactSamplingBackend(policy.model, policy.tokenizer, format_prompt=plain_prompt)
    problems = make_problems(args.rows // args.group, seed=0, levels=[1, 2, 3, 4])
    batch = backend.generate(problems, SamplingParams(args.group, 1.0, 1.0, args.max_new_tokens))
    chunks = micro_chunks(_by_length(batch, torch.arange(batch.num_rows)), args.micro)
    real = int(batch.prompt_mask.sum() + batch.response_mask.sum())
    padded_cells = sum(
        int(c.numel() * (batch.select(c).prompt_mask.any(0).sum() + batch.select(c).response_mask.sum(-1).max()))
        for c in chunks
    )
    packed_cells = sum(pack_rows(batch.select(c)).input_ids.numel() for c in chunks)
    print(f"{batch.num_rows} rows, {real} real tokens; cells computed: padded {padded_cells}, packed {packed_cells}")
    for packed in (False, True, False, True):
        began = time.perf_counter()
        for _ in range(args.repeats):
            policy.model.zero_grad(set_to_none=True)
            for c in chunks:
                logp, _ = response_logprobs(policy.model, batch.select(c), temperature=1.0, packed=packed)
                logp.sum().backward()
        seconds = (time.perf_counter() - began) / args.repeats
        print(f"{'packed' if packed else 'padded'}: {seconds:.3f} s per forward + backward of the batch")


if __name__ == "__main__":
    main()
