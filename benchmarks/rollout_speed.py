"""Rollout speed of the backends side by side: tokens/s of `hf`, `compact` and `vllm` on one model.

Each backend samples the same prompts for a few steps (after one warm-up step) and, as in training, gets
the policy's weights after each step (`after_update`: a no-op for hf and compact, the weight push for vllm).
Printed per backend: start-up seconds, generation seconds per step, generated tokens per step, tokens/s,
weight-push seconds per step; for vllm also the engine's share of the generation time (the rest is the
trainer's own forward for the behaviour log-probs).

    python benchmarks/rollout_speed.py                          # the testbed base, all three backends
    python benchmarks/rollout_speed.py --model PATH --backends hf vllm --prompts 64 --max-new-tokens 256

vllm is skipped with a note when it is not installed (`make vllm` on a CPU machine). Set
VLLM_CPU_KVCACHE_SPACE (GiB) to bound the CPU build's KV cache (default here: 1).
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="testbed", help="'testbed' or a model directory")
    parser.add_argument("--backends", nargs="+", default=["hf", "compact", "vllm"])
    parser.add_argument("--prompts", type=int, default=32, help="prompts per step (B)")
    parser.add_argument("--group", type=int, default=8, help="responses per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per backend, after one warm-up step")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    import torch

    from frugalrl.data import make_problems, plain_prompt
    from frugalrl.engine.policy import load_policy
    from frugalrl.engine.rollout import SamplingParams, rollout_backends
    from frugalrl.engine.vllm_backend import vllm_available
    from frugalrl.training.build import resolve_model_path

    torch.set_num_threads(args.threads)
    policy = load_policy(resolve_model_path(args.model), device=args.device)
    policy.model.eval()
    problems = make_problems(args.prompts * (args.steps + 1), seed=0)
    params = SamplingParams(args.group, args.temperature, 1.0, args.max_new_tokens)
    rows = []
    for name in args.backends:
        if name == "vllm" and not vllm_available():
            print("vllm: not installed, skipped (`make vllm` installs the CPU build)")
            continue
        began = time.perf_counter()
        backend_cls = rollout_backends.get(name)
        options = {"options": {"enforce_eager": True}} if name == "vllm" else {}
        backend = backend_cls(policy.model, policy.tokenizer, format_prompt=plain_prompt, **options)
        startup = time.perf_counter() - began
        torch.manual_seed(0)
        gen_s = push_s = engine_s = 0.0
        tokens = 0
        for step in range(args.steps + 1):
            chunk = problems[step * args.prompts : (step + 1) * args.prompts]
            began = time.perf_counter()
            batch = backend.generate(chunk, params)
            generated = time.perf_counter() - began
            began = time.perf_counter()
            backend.after_update()
            pushed = time.perf_counter() - began
            if step == 0:
                startup += generated + pushed  # warm-up: counted as start-up
                continue
            gen_s, push_s, tokens = gen_s + generated, push_s + pushed, tokens + int(batch.response_mask.sum())
            engine_s += getattr(backend, "timings", {}).get("engine", generated)
        rows.append((name, startup, gen_s / args.steps, tokens / args.steps, tokens / gen_s, push_s / args.steps,
                     engine_s / args.steps))  # fmt: skip
        del backend
    print(f"\nmodel {args.model}: B={args.prompts} G={args.group} max_new_tokens={args.max_new_tokens} "
          f"T={args.temperature}, {args.steps} timed steps, {args.threads} torch thread(s)")  # fmt: skip
    header = ("backend", "start-up s", "gen s/step", "tokens/step", "tokens/s", "push s/step", "engine s/step")
    print("  ".join(f"{h:>13}" for h in header))
    for name, startup, gen, tok, rate, push, engine in rows:
        cells = (name, f"{startup:.2f}", f"{gen:.3f}", f"{tok:.0f}", f"{rate:.0f}", f"{push:.4f}", f"{engine:.3f}")
        print("  ".join(f"{c:>13}" for c in cells))


if __name__ == "__main__":
    main()
