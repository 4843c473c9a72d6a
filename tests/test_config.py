"""Configs: defaults, recipes, overrides, and errors a user can act on."""

from pathlib import Path

import pytest

from frugalrl.config import Config, ConfigError, config_changes, describe, load_config, to_yaml

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
        ("algo.advantage=reinforce", "needs signed rewards: set algo.reward=correctness_pm1"),
        ("algo.kl_mode=reward", "only GAE reads"),
        ("algo.kl_mode=both", "algo.kl_mode='both' is not one of: loss, reward"),
        ("critic.lr=0", "critic.lr and critic.value_clip must be > 0"),
        ("algo.loss=nll", "use it with algo.advantage=raft"),
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


def test_repo_rejects_advantage_args_it_would_ignore():
    # RePO computes its own group-normalised advantages (replay.advantage_mode): GRPO's scale_std would be dropped
    with pytest.raises(ConfigError, match=r"replay.kind=repo does not read algo.advantage_args \(\{'scale_std'"):
        load_config(None, ["replay.kind=repo", "algo.advantage_args={scale_std: false}"])
    assert load_config(None, ["replay.kind=repo"]).replay.kind == "repo"


def test_missing_recipe_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_key_in_a_yaml_recipe_is_rejected(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer:\n  lr: 1e-4\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'trainer.epochs'"):
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
    with pytest.raises(ConfigError, match="group_size=1 every group is all correct or all wrong"):
        load_config(None, ["rollout.group_size=1", "select.filters=[drop_all_wrong]"])
    load_config(Path(__file__).parent.parent / "configs" / "ppo.yaml")  # G = 1 without filters is fine
