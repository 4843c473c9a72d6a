"""The parts a config names, checked generically: each exists, accepts its arguments and gets what it needs.

Every registry entry declares `Needs` and `provides` (`frugalrl.registry`); `check_parts` applies them to the
parts a config chose, so neither this module nor `frugalrl.config` names an algorithm. Also here: what the
parts accept (for --help), and how a run's saved config from before a rename is carried to today's keys.
The config is read by attribute: this module does not import `frugalrl.config`.
"""

from __future__ import annotations

import inspect
from typing import Any

from omegaconf import OmegaConf

from frugalrl.algos import advantage_estimators, aggregations, kl_estimators, policy_losses
from frugalrl.algos.losses import LOSS_INPUTS
from frugalrl.data import data_sources, prompt_templates
from frugalrl.engine.critic import critics
from frugalrl.engine.rollout import rollout_backends
from frugalrl.registry import Registry, check_args, describe_args
from frugalrl.replay import replay_kinds
from frugalrl.rewards import answer_extractors, make_reward_function, reward_functions
from frugalrl.selection import group_filters, selectors


def migrate_saved(layer: Any, *, default_advantage: str) -> Any:
    """A saved config with today's keys: model.path=testbed → testbed-arith (the only base then);
    trainer.ppo_epochs → trainer.epochs; the flat replay keys → replay.args,
    keeping those its replay kind accepts (a saved config held every kind's); critic.kind set when the saved
    estimator needs a critic (before critic.kind existed, the estimator implied it)."""
    tree = OmegaConf.to_container(layer)
    trainer, replay, algo = (tree.get(name) or {} for name in ("trainer", "replay", "algo"))
    model = tree.get("model") or {}
    if model.get("path") == "testbed":  # saved before the bases had names: the first testbed was the only one
        model["path"] = "testbed-arith"
    if "ppo_epochs" in trainer:
        trainer["epochs"] = trainer.pop("ppo_epochs")
    flat = {key: replay.pop(key) for key in list(replay) if f"replay.{key}" in RENAMED}
    if flat:
        kind = replay_kinds.get(replay.get("kind", "none"))
        accepted = {name for name, _, _ in describe_args(kind)}
        replay["args"] = {**{k: v for k, v in flat.items() if k in accepted}, **replay.get("args", {})}
    needs = advantage_estimators.needs(algo.get("advantage", default_advantage)).capabilities
    if "critic" in needs and "kind" not in (tree.get("critic") or {}):
        tree.setdefault("critic", {})["kind"] = critics.providers("critic")[0]
    return OmegaConf.create(tree)



def with_effective_args(cfg: Any) -> dict[str, Any]:
    """The config as a tree, each part's arguments with its defaults filled in (for comparing two configs)."""
    tree = OmegaConf.to_container(OmegaConf.structured(cfg))
    for _, registry, name, args in chosen_parts(cfg):
        if args is not None:
            section, key = args[0].split(".")
            defaults = describe_args(registry.get(name), inputs=args[2])
            tree[section][key] = {**{a: d for a, d, _ in defaults if d is not inspect.Parameter.empty}, **args[1]}
    return tree



# (key, registry, name, (args key, args, inputs the engine passes itself) or None): a part a config names.
Part = tuple[str, Registry, str, "tuple[str, dict[str, Any], tuple[str, ...]] | None"]


def chosen_parts(cfg: Any) -> list[Part]:
    """The parts `cfg` names, with their registries and arguments."""
    a = cfg.algo
    return [
        ("algo.advantage", advantage_estimators, a.advantage, ("algo.advantage_args", a.advantage_args, ())),
        ("algo.loss", policy_losses, a.loss, ("algo.loss_args", a.loss_args, LOSS_INPUTS)),
        ("algo.reward", reward_functions, a.reward, None),
        ("algo.answer_extraction", answer_extractors, a.answer_extraction, None),
        ("algo.agg", aggregations, a.agg, None),
        ("algo.kl_estimator", kl_estimators, a.kl_estimator, None),
        ("critic.kind", critics, cfg.critic.kind, None),
        ("select.selector", selectors, cfg.select.selector, ("select.selector_args", cfg.select.selector_args, ())),
        *[("select.filters", group_filters, name, None) for name in cfg.select.filters],
        ("replay.kind", replay_kinds, cfg.replay.kind, ("replay.args", cfg.replay.args, ())),
        ("rollout.backend", rollout_backends, cfg.rollout.backend, None),
        ("data.source", data_sources, cfg.data.source, None),
        ("data.template", prompt_templates, cfg.data.template, None),
    ]


def check_parts(cfg: Any) -> None:
    """Every named part exists and accepts its arguments; every capability a part needs is provided by another
    chosen part, none it excludes is; G is large enough for each. Raises ValueError naming key and fix."""
    parts = chosen_parts(cfg)
    provided: dict[str, str] = {}  # capability → "key=name" of the part that provides it
    for key, registry, name, args in parts:
        entry = registry.get(name)
        if args is not None:
            check_args(args[0], entry, dict(args[1]), inputs=args[2])
        provided |= {cap: f"{key}={name}" for cap in registry.provides(name)}
    _check_filter_args(cfg.select)
    make_reward_function(cfg.algo.reward, extraction=cfg.algo.answer_extraction)  # the reward reads that extraction
    for key, registry, name, _ in parts:
        needs = registry.needs(name)
        why = f" ({needs.why})" if needs.why else ""
        for cap in needs.capabilities:
            if cap not in provided:
                raise ValueError(f"{key}={name} needs {cap}{why}: {_providers_hint(parts, cap)}")
        for cap in needs.excludes:
            if cap in provided:
                raise ValueError(f"{key}={name} cannot be combined with {provided[cap]}{why}")
        if cfg.rollout.group_size < needs.min_group_size:
            raise ValueError(
                f"{key}={name} needs rollout.group_size >= {needs.min_group_size}{why}, got {cfg.rollout.group_size}"
            )
    if cfg.algo.kl_mode == "reward" and "token_rewards" not in provided:
        raise ValueError(
            "algo.kl_mode=reward puts the KL into token rewards, which this estimator does not read: "
            f"{_providers_hint(parts, 'token_rewards')}, or use algo.kl_mode=loss"
        )


def _check_filter_args(select: Any) -> None:
    """`select.filter_args` names only chosen filters, each with arguments it accepts."""
    for name, args in dict(select.filter_args).items():
        if name not in select.filters:
            raise ValueError(f"select.filter_args.{name}: {name} is not in select.filters {list(select.filters)}")
        check_args(f"select.filter_args.{name}", group_filters.get(name), dict(args), inputs=("tol",))


def describe_parts() -> list[tuple[str, str, str]]:
    """(args key, part name, 'arg=default  help' ...) for every registered part that takes arguments, for --help."""
    rows = []
    for args_key, registry, inputs in (
        ("algo.advantage_args", advantage_estimators, ()),
        ("algo.loss_args", policy_losses, LOSS_INPUTS),
        ("select.selector_args", selectors, ()),
        ("replay.args", replay_kinds, ()),
    ):
        for name in registry.names():
            args = describe_args(registry.get(name), inputs=inputs)
            if args:
                listed = ", ".join(f"{arg}={default!r}" for arg, default, _ in args)
                rows.append((args_key, name, listed))
    return rows


def _providers_hint(parts: list[Part], capability: str) -> str:
    """'set algo.loss=rr_offpolicy' (or the list of choices) for the registries whose entries provide it."""
    choices = [f"{key}={name}" for key, registry, *_ in parts for name in registry.providers(capability)]
    return f"set {' or '.join(dict.fromkeys(choices))}" if choices else "no registered part provides it"


# Keys that were renamed: an old recipe fails with the new name instead of a bare "unknown key".
RENAMED = {
    "trainer.ppo_epochs": "trainer.epochs",
    **{
        f"replay.{name}": f"replay.args.{name}"
        for name in (
            "capacity", "fresh_fraction", "capacity_per_prompt", "replay_k", "min_cache", "strategy",
            "advantage_mode", "off_weight",
        )
    },
}  # fmt: skip
