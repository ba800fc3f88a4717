"""jaxse/config.py: composition with overrides onto the schema, one-line errors naming the key, range checks,
``describe`` (the trainer's --help), ``data_config`` for mappings, ``check_paths`` and the YAML round trip."""
from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from jaxse import config


@pytest.fixture(scope="module")
def tiny() -> config.TrainConfig:
    return config.compose(["experiment=tiny", "trainer.max_steps=7", "optim.lr=2e-4", "data.snr_range=[0,5]"])


def test_compose_applies_overrides_as_typed_values(tiny):
    assert isinstance(tiny, config.TrainConfig) and isinstance(tiny.data, config.DemoData)
    assert tiny.trainer.max_steps == 7 and isinstance(tiny.trainer.max_steps, int)
    assert tiny.optim.lr == pytest.approx(2e-4) and isinstance(tiny.optim.lr, float)
    assert tiny.data.snr_range == [0.0, 5.0]
    assert tiny.trainer.log_every == 2  # set by experiments/experiment/tiny.yaml
    assert tiny.optim.clip_norm == 5.0  # a schema default nobody overrode
    assert tiny.workdir == "runs/tiny"  # the ${name} interpolation is resolved
    assert tiny.model_name == "dccrn-cl-tiny" and "name" not in tiny.model_options
    assert tiny["trainer"]["max_steps"] == 7 and "optim" in tiny and tiny.get("nope", 3) == 3  # read as a mapping
    with pytest.raises(KeyError):
        tiny["nope"]


@pytest.mark.parametrize("override, expected", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'"),
    ("data.nope=1", "unknown config key 'data.nope'"),
    ("model.nope=3", "unknown config key 'model.nope'"),
    ("optim.lr=fast", "bad value for optim.lr: 'fast'"),
    ("optim.plateau_factor=0", "bad value for optim.plateau_factor: 0.0 (expected a number in (0, 1])"),
    ("optim.schedule=step", "bad value for optim.schedule: 'step' (expected plateau | cosine)"),
    ("data.snr_range=[5,1]", "bad value for data.snr_range: [5.0, 1.0]"),
    ("data.sample_rate=8000", "bad value for data.sample_rate: 8000"),
    ("data.batch_size=0", "bad value for data.batch_size: 0"),
    ("trainer.eval_every=0", "bad value for trainer.eval_every: 0 (expected an integer >= 1)"),
    ("distributed.coordinator_address=nohost", "bad value for distributed.coordinator_address"),
])
def test_bad_key_or_value_is_one_line_naming_the_key(override, expected):
    with pytest.raises(config.ConfigError) as e:
        config.compose(["experiment=tiny", override])
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_validate_checks_ranges_and_the_model(tiny):
    config.validate(tiny)
    bad = dataclasses.replace(tiny, trainer=dataclasses.replace(tiny.trainer, keep=0))
    with pytest.raises(config.ConfigError, match=r"bad value for trainer\.keep: 0 \(expected an integer >= 1\)"):
        config.validate(bad)
    bad = dataclasses.replace(tiny, data=dataclasses.replace(tiny.data, synthetic_noise_prob=1.5))
    with pytest.raises(config.ConfigError, match=r"bad value for data\.synthetic_noise_prob: 1\.5"):
        config.validate(bad)
    with pytest.raises(config.ConfigError, match="bad value for model.name: 'unet'"):
        config.validate(dataclasses.replace(tiny, model={"name": "unet"}))


def test_describe_lists_every_key_with_type_default_and_range():
    lines = config.describe()
    assert "  trainer.max_steps: int = 1000  (an integer >= 1)" in lines
    assert "  optim.schedule: str = 'plateau'  (plateau | cosine)" in lines
    keys = {line.split(":")[0].strip() for line in lines}
    for section in ("optim", "trainer", "distributed"):
        fields = dataclasses.fields(type(getattr(config.TrainConfig(), section)))
        assert {f"{section}.{f.name}" for f in fields} <= keys
    assert {"name", "workdir", "seed", "model", "loss", "data"} <= keys
    data_keys = {line.split(":")[0].strip() for line in config.describe(config.PairedData)}
    assert {"train_noisy_dir", "batch_size", "host_sharding"} <= data_keys


def test_data_config_merges_a_mapping_onto_its_kind():
    typed = config.data_config({"kind": "demo", "batch_size": 2})
    assert isinstance(typed, config.DemoData) and typed.batch_size == 2
    assert typed.segment_seconds == 2.0 and typed.snr_range == [-5.0, 15.0]  # defaults filled in
    assert config.data_config(typed) is typed  # a typed config passes through
    paired = config.data_config({"kind": "paired", "train_noisy_dir": "n", "train_clean_dir": "c",
                                 "test_noisy_dir": "tn", "test_clean_dir": "tc"})
    assert paired.valid_noisy_dir == "tn"  # ${.test_noisy_dir} resolved
    with pytest.raises(config.ConfigError, match="bad value for data.kind: 'wav'"):
        config.data_config({"kind": "wav"})
    with pytest.raises(config.ConfigError, match="unknown config key 'data.nope'"):
        config.data_config({"kind": "demo", "nope": 1})
    with pytest.raises(config.ConfigError, match=r"bad value for data\.batch_size: 0"):
        config.data_config({"kind": "demo", "batch_size": 0})


def test_compose_data_for_the_evaluation_commands(tmp_path):
    data = config.compose_data("paired", [
        f"train_noisy_dir={tmp_path}", f"train_clean_dir={tmp_path}", f"test_noisy_dir={tmp_path}",
        f"test_clean_dir={tmp_path}"])
    assert isinstance(data, config.PairedData) and data.valid_clean_dir == str(tmp_path)
    with pytest.raises(config.ConfigError, match="missing required config key 'data.train_noisy_dir'"):
        config.compose_data("paired")
    with pytest.raises(config.ConfigError, match="unknown config key 'data.nope'"):
        config.compose_data("demo", ["nope=1"])


def test_check_paths_names_the_missing_folder(tmp_path):
    (tmp_path / "noisy").mkdir()
    (tmp_path / "afile").write_text("x")
    paired = config.data_config({"kind": "paired", "train_noisy_dir": str(tmp_path / "noisy"),
                                 "train_clean_dir": str(tmp_path / "gone"), "test_noisy_dir": str(tmp_path / "noisy"),
                                 "test_clean_dir": str(tmp_path / "noisy")})
    with pytest.raises(config.ConfigError) as e:
        config.check_paths(paired)
    assert str(e.value) == f"bad value for data.train_clean_dir: {str(tmp_path / 'gone')!r} does not exist"
    mix = config.data_config({"kind": "mix", "clean_dirs": [str(tmp_path / "noisy"), str(tmp_path / "afile")],
                              "noise_dirs": []})
    with pytest.raises(config.ConfigError, match=r"data\.clean_dirs: .*afile' is not a folder"):
        config.check_paths(mix)
    config.check_paths(dataclasses.replace(mix, clean_dirs=[str(tmp_path / "noisy")]))
    tfds = config.data_config({"kind": "tfds", "data_dir": str(tmp_path / "to-be-made"),
                               "manual_dir": str(tmp_path / "noisy"), "index_cache_dir": str(tmp_path / "later")})
    config.check_paths(tfds)  # outputs (data_dir, index_cache_dir) need not exist yet


def test_save_yaml_round_trip(tiny, tmp_path):
    path = tmp_path / "sub" / "config.yaml"
    path.parent.mkdir()
    config.save_yaml(tiny, path)
    loaded = OmegaConf.to_container(OmegaConf.load(path))
    assert loaded == config.to_container(tiny)
    assert loaded["trainer"]["max_steps"] == 7 and loaded["data"]["kind"] == "demo"
    assert config.data_config(loaded["data"]) == tiny.data
    assert not [p.name for p in path.parent.iterdir() if p.name != "config.yaml"]  # atomic: no temporary left


def test_options_and_one_line():
    assert "tiny" in config.options("experiment") and "demo" in config.options("data")
    assert config.one_line("  a\n\n  b  \n c") == "a b c"
