"""Configs: defaults, recipes, overrides, and errors a user can act on."""

from pathlib import Path

import pytest

from frugalrl.config import Config, ConfigError, config_changes, describe, load_config, to_yaml
from frugalrl.config_parts import describe_parts

RECIPES = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_overrides_apply_on_top_of_defaults():
    config = load_config(None, ["trainer.lr=3e-5", "rollout.group_size=4", "algo.loss_args={eps_high: 0.28}"])
    assert config.trainer.lr == 3e-5 and config.rollout.group_size == 4
    assert config.algo.loss_args == {"eps_high": 0.28}
    assert config.run_dir == Path("runs") / "run"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.lrr=1", "unknown config key 'trainer.lrr'; valid keys in section 'trainer': max_steps"),
        ("trainr.lr=1", "top level: run, model, data, rollout, algo, critic, select, replay, trainer, eval"),
        ("algo.loss=clipd", "unknown policy loss 'clipd'; valid names: clipped, nll, rr_offpolicy"),
        ("algo.advantage=ppo", "valid names: gae, grpo, raft, reinforce, reinforce_rej, rloo"),
        ("algo.loss_args={eps_hi: 0.3}", "unknown arguments ['eps_hi'] for clipped_policy_loss; valid: eps_low"),
        ("trainer.lr=fast", "invalid value for trainer.lr"),
        ("rollout.group_size=0", "rollout.group_size must be >= 1, got 0"),
        ("trainer.lr_schedule=step", "trainer.lr_schedule='step' is not one of: constant, linear, cosine"),
        ("algo.reward=exact", "unknown reward function 'exact'"),
        ("data.source=file", "data.source=file needs data.path"),
        ("trainer", "is not of the form section.key=value"),
        ("algo.advantage=reinforce", "needs signed_rewards (A = r needs rewards below 0 for wrong answers): set "
         "algo.reward=correctness_pm1 or algo.reward=limr"),
        ("algo.kl_mode=reward", "which this estimator does not read: set algo.advantage=gae, or use algo.kl_mode=loss"),
        ("algo.kl_mode=both", "algo.kl_mode='both' is not one of: loss, reward"),
        ("critic.lr=0", "critic.lr and critic.value_clip must be > 0"),
        ("algo.loss=nll", "algo.loss=nll needs response_rejection (RAFT's NLL trains on accepted responses only): "
         "set algo.advantage=raft"),
        ("algo.advantage=gae", "algo.advantage=gae needs critic (GAE reads token values"),
        ("critic.kind=value", "unknown critic 'value'; valid names: none, value_model"),
        ("replay.kind=rr", "replay.kind=rr needs staleness_weight"),
        ("replay.kind=rp", "unknown replay kind 'rp'; valid names: none, repo, rr"),
        ("replay.args={capacity: 4}", "replay.args has unknown arguments ['capacity'] for NoReplay; valid: none"),
        ("rollout.backend=vllmm", "unknown rollout backend 'vllmm'"),
        ("data.source=hub", "unknown data source 'hub'; valid names: arithmetic, columns, file, reasoning_gym"),
        ("data.template=chatml", "unknown prompt template 'chatml'"),
        ("select.selector_args={mu: 2}", "select.selector_args has unknown arguments ['mu'] for UniformSelector"),
        ("trainer.ppo_epochs=2", "config key 'trainer.ppo_epochs' was renamed: set trainer.epochs instead"),
        ("replay.capacity=8", "config key 'replay.capacity' was renamed: set replay.args.capacity instead"),
        ("rollout.top_p=0", "rollout.top_p must be in (0, 1]"),
        ("eval.k=-1", "eval.k must be >= 0"),
        ("select.filters=[drop_some]", "unknown group filter 'drop_some'"),
        ("select.dynamic_sampling=true", "select.dynamic_sampling needs select.filters"),
    ],
)
def test_bad_config_raises_an_actionable_error(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # each part checks its own arguments when the config loads, before any model is built
        (["select.selector=dots", "select.selector_args={mu: 0}"], "dots selector: mu must be >= 1, got 0"),
        (["select.selector=dots", "select.selector_args={m: 2}"],
         "select.selector_args has unknown arguments ['m'] for DotsSelector; valid: mu (default 2)"),
        (["replay.kind=repo", "replay.args={replay_kk: 2}"], "unknown arguments ['replay_kk'] for PromptReplay"),
        (["replay.kind=repo", "replay.args={min_cache: 20}"], "replay.args.min_cache=20 > replay.args.capacity_per"),
        (["replay.kind=repo", "replay.args={strategy: best}"], "unknown replay strategy 'best'"),
        (["replay.kind=rr", "algo.loss=rr_offpolicy", "replay.args={fresh_fraction: 0}"], "fresh_fraction must be in"),
        (["algo.advantage_args={eps: fast}"], "algo.advantage_args.eps='fast' should be a float (default 1e-06)"),
        (["algo.loss_args={agg: seq}"], "algo.loss_args has unknown arguments ['agg']"),  # the engine's input
        # what a part needs of the others
        (["replay.kind=repo", "algo.advantage=gae", "critic.kind=value_model", "rollout.group_size=1"],
         "replay.kind=repo cannot be combined with critic.kind=value_model (replayed rows carry no critic values)"),
        (["replay.kind=rr", "algo.loss=rr_offpolicy", "algo.advantage=gae", "critic.kind=value_model"],
         "replay.kind=rr cannot be combined with critic.kind=value_model"),
    ],
)  # fmt: skip
def test_parts_check_their_arguments_and_needs_at_load(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in str(err.value)


def test_repo_applies_any_estimator_with_its_arguments():
    config = load_config(None, ["replay.kind=repo", "algo.advantage=rloo"])
    assert (config.replay.kind, config.algo.advantage) == ("repo", "rloo")
    assert load_config(None, ["replay.kind=repo", "algo.advantage_args={scale_std: false}"]).replay.kind == "repo"


def test_missing_recipe_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_key_in_a_yaml_recipe_is_rejected(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer:\n  lr: 1e-4\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'trainer.epoch'"):
        load_config(recipe)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_config(None, ["trainer.lr=2e-4", "data.levels=[1,2]"])
    (tmp_path / "config.yaml").write_text(to_yaml(config))
    assert load_config(tmp_path / "config.yaml") == config


def test_every_field_is_documented():
    rows = describe(Config)
    assert len(rows) > 40
    assert not [key for key, _, help_text in rows if not help_text]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_in_configs_loads(recipe):
    load_config(recipe)


def test_recipes_exist():
    assert {"grpo", "grpo_filter"} <= {r.stem for r in RECIPES}


def test_recipe_inherits_and_overrides_its_parent(tmp_path):
    (tmp_path / "base.yaml").write_text("trainer:\n  lr: 1.0e-4\n  max_steps: 7\n")
    (tmp_path / "child.yaml").write_text("inherit: base.yaml\ntrainer:\n  lr: 5.0e-5\n")
    config = load_config(tmp_path / "child.yaml", ["run.seed=3"])
    assert (config.trainer.lr, config.trainer.max_steps, config.run.seed) == (5e-5, 7, 3)
    (tmp_path / "loop.yaml").write_text("inherit: loop.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(tmp_path / "loop.yaml")


def test_filter_recipe_adds_dynamic_sampling_to_grpo():
    grpo, filtered = (
        load_config(Path(__file__).parent.parent / "configs" / f"{n}.yaml") for n in ("grpo", "grpo_filter")
    )
    assert filtered.select.filters == ["drop_zero_variance"] and filtered.select.dynamic_sampling
    assert filtered.trainer == grpo.trainer and filtered.data == grpo.data


def test_config_changes_ignore_what_a_resumed_run_may_change():
    old = load_config(None, ["trainer.lr=1e-4"])
    new = load_config(None, ["trainer.lr=2e-4", "trainer.max_steps=500", "eval.every=3", "run.seed=1"])
    assert config_changes(old, new) == ["run.seed", "trainer.lr"]
    assert config_changes(old, old) == []


def test_one_response_per_prompt_with_a_variance_filter_is_refused():
    with pytest.raises(ConfigError, match="select.filters=drop_all_wrong needs rollout.group_size >= 2"):
        load_config(None, ["rollout.group_size=1", "select.filters=[drop_all_wrong]"])
    load_config(Path(__file__).parent.parent / "configs" / "ppo.yaml")  # G = 1 without filters is fine


def test_help_lists_the_arguments_of_every_part_that_takes_some():
    rows = {(key, name): args for key, name, args in describe_parts()}
    assert rows[("replay.args", "rr")] == "capacity=128, fresh_fraction=0.5"
    assert rows[("algo.loss_args", "clipped")] == "eps_low=0.2, eps_high=0.2, dual_clip=None"  # not the engine's
    assert ("replay.args", "none") not in rows and ("select.selector_args", "uniform") not in rows


def test_testbed_in_a_recipe_is_the_default_base_and_in_an_old_saved_config_the_first_one(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  path: testbed\n")
    assert load_config(path).model.path == "testbed-columns"  # a recipe: today's default base
    # A run saved before the bases had names ran on the only one there was; its resume must not switch base.
    assert load_config(path, saved=True).model.path == "testbed-arith"
    path.write_text("model:\n  path: testbed-columns\n")
    assert load_config(path, saved=True).model.path == "testbed-columns"
