"""Experiment configs: Hydra composition of the YAML files under ``experiments/`` and their validation.

``compose(["experiment=dccrn", "trainer.max_steps=10"])`` returns the resolved config as a plain ``dict``. Errors
(unknown key, unknown experiment or data source, value of the wrong type or range) raise ``ConfigError`` with one
line that names the key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import OmegaConf


class ConfigError(ValueError):
    """A bad command-line override or config value; the message is one line naming the key."""


def config_dir() -> Path:
    """The folder holding ``train.yaml``, ``experiment/`` and ``data/`` (installed as package ``jaxse.experiments``)."""
    try:
        from importlib.resources import files

        d = Path(str(files("jaxse.experiments")))
        if (d / "train.yaml").is_file():
            return d
    except ModuleNotFoundError:
        pass
    d = Path(__file__).resolve().parent.parent / "experiments"  # running from a source checkout
    if (d / "train.yaml").is_file():
        return d
    raise ConfigError("cannot find the experiments config folder (package jaxse.experiments)")


def options(group: str) -> list[str]:
    """Names of the configs of a group, e.g. ``options("experiment")``."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _one_line(msg: str) -> str:
    return " ".join(part.strip() for part in str(msg).strip().splitlines() if part.strip())


def _explain(exc: Exception, overrides: Sequence[str]) -> str:
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    full = text + ("\n" + str(cause) if cause else "")
    for group in ("experiment", "data"):
        if f"Could not find '{group}/" in full:
            bad = full.split(f"Could not find '{group}/", 1)[1].split("'", 1)[0]
            return f"unknown {group} {bad!r}; available: {', '.join(options(group))}"
    if "not in struct" in full or "Could not override" in full:
        key = full.split("Could not override '", 1)[1].split("'", 1)[0] if "Could not override '" in full else "?"
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        return f"unknown config key {key!r}" + (f" (under {parent!r})" if parent else "") + \
            "; see experiments/train.yaml and experiments/data/*.yaml for the valid keys"
    if "Missing mandatory value" in full:
        key = full.split("full_key:", 1)[1].split()[0] if "full_key:" in full else "?"
        return f"missing required config key {key!r}: set it on the command line ({key}=...)"
    if "Error parsing override" in full or "mismatched input" in full:
        return "cannot parse the command line: " + _one_line(full)
    return _one_line(full)


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> dict:
    """Compose ``experiments/<config_name>.yaml`` with Hydra ``key=value`` overrides; returns a resolved ``dict``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"bad argument {o!r}: expected key=value (e.g. experiment=dccrn trainer.max_steps=100)")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except ConfigError:
        raise
    except Exception as e:  # Hydra/OmegaConf errors: turn into one line naming the key
        raise ConfigError(_explain(e, overrides)) from None
    finally:
        GlobalHydra.instance().clear()
    validate(resolved)
    return resolved


def parse_key_values(argv: Sequence[str], keys: Sequence[str], *, required: Sequence[str] = ()) -> dict[str, str]:
    """Plain ``key=value`` command-line arguments of the inference CLIs -> ``{key: value}`` (strings).

    An argument without ``=``, a key not in ``keys`` or a missing ``required`` key raises ``ConfigError``.
    """
    args: dict[str, str] = {}
    for a in argv:
        if "=" not in a:
            raise ConfigError(f"bad argument {a!r}: expected key=value (keys: {', '.join(keys)})")
        k, v = a.split("=", 1)
        if k not in keys:
            raise ConfigError(f"unknown key {k!r}; valid keys: {', '.join(keys)}")
        args[k] = v
    for k in required:
        if k not in args:
            raise ConfigError(f"missing {k}=...")
    return args


# ------------------------------------------------------------------------------------------ validation
def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "workdir": (lambda v: isinstance(v, str) and v != "", "a directory path"),
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "loss": (lambda v: v in ("si_snr", "magnitude_mse"), "si_snr or magnitude_mse"),
    "optim.lr": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "optim.clip_norm": (lambda v: v is None or (_is_num(v) and v > 0), "null or a number > 0"),
    "optim.warmup_steps": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "optim.plateau_patience": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "optim.plateau_factor": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "optim.min_lr": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "trainer.max_steps": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.log_every": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.eval_every": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.ckpt_every": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.keep": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.max_nonfinite": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.final_report": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.report_workers": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "trainer.progress": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.conv_lowering": (lambda v: v in ("matmul", "xla"), "matmul or xla"),
    "trainer.tune_malloc": (lambda v: isinstance(v, bool), "true or false"),
    "data.kind": (lambda v: v in ("paired", "mix", "demo", "tfds"), "paired, mix, demo or tfds"),
    "data.batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1 (the global batch)"),
    "data.segment_seconds": (lambda v: _is_num(v) and v > 0, "a number of seconds > 0"),
    "data.sample_rate": (lambda v: _is_int(v) and v > 0, "an integer rate in Hz"),
    "data.eval_examples": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "distributed.coordinator_address": (lambda v: v is None or (isinstance(v, str) and ":" in v), "null or host:port"),
    "distributed.num_processes": (lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "distributed.process_id": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
}


def _get(cfg: dict, dotted: str):
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return KeyError
        cur = cur[part]
    return cur


def validate(cfg: dict) -> None:
    """Check types and ranges of the known keys and that the model exists with these options."""
    for key, (ok, what) in _RULES.items():
        v = _get(cfg, key)
        if v is KeyError:
            if key.startswith("data."):
                continue
            raise ConfigError(f"missing config key {key!r}")
        if not ok(v):
            raise ConfigError(f"bad value for {key}: {v!r} (expected {what})")
    model = dict(cfg["model"])
    name = model.pop("name")
    from jaxse.models import MODEL_NAMES, get_model

    if name not in MODEL_NAMES:
        raise ConfigError(f"bad value for model.name: {name!r} (valid: {', '.join(MODEL_NAMES)})")
    try:
        get_model(name, **model)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad model options {model}: {_one_line(e)}") from None
    if cfg["data"].get("sample_rate", 16000) != 16000:
        raise ConfigError(f"bad value for data.sample_rate: {cfg['data']['sample_rate']} (the models work at 16000 Hz)")


def model_options(cfg: dict) -> tuple[str, dict]:
    """``(registry name, constructor overrides)`` of ``cfg["model"]``."""
    model = dict(cfg["model"])
    return model.pop("name"), model


def save_yaml(cfg: dict, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML atomically (temp file + rename)."""
    from jaxse.io.atomic import atomic_write

    text = OmegaConf.to_yaml(OmegaConf.create(cfg)).encode("utf-8")
    atomic_write(path, lambda f: f.write(text))
