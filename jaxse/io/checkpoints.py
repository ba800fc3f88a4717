"""Checkpoints on disk: orbax ``CheckpointManager`` directories that training, inference and conversion share.

Layout of a workdir::

    WORKDIR/config.yaml                resolved training config
    WORKDIR/checkpoints/<step>/model   {"params", "batch_stats"}       (everything inference needs)
    WORKDIR/checkpoints/<step>/train   {"opt_state", "step", "rng"}    (only training checkpoints)
    WORKDIR/checkpoints/<step>/meta    JSON: model name + overrides, sample rate, data position, metrics

Orbax writes each step into a temporary directory and renames it when complete, so a run killed while saving never
leaves a half-written checkpoint in place of a good one. ``load_model`` accepts a workdir, its ``checkpoints``
folder, or one step folder, and picks the best checkpoint by validation metric (else the latest).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

CKPT_DIR = "checkpoints"
BEST_METRIC = "val_si_snr"  # larger is better


class CheckpointError(RuntimeError):
    """A checkpoint path that does not hold a usable checkpoint (the message names the path and the problem)."""


def _best_fn(metrics: Mapping[str, float]) -> float:
    return float(metrics[BEST_METRIC])


def manager(workdir: str | os.PathLike, *, keep: int = 3, keep_best: bool = True, read_only: bool = False,
            async_save: bool = True) -> ocp.CheckpointManager:
    """Checkpoint manager of ``WORKDIR/checkpoints`` keeping the last ``keep`` steps and the best by ``val_si_snr``."""
    if read_only:  # orbax logs a warning for every read-only manager; readers need no such noise
        logging.getLogger("absl").setLevel(logging.ERROR)
    root = Path(workdir).absolute() / CKPT_DIR
    policies = [cm.LatestN(n=keep)]
    if keep_best:
        policies.append(cm.BestN(get_metric_fn=_best_fn, n=1, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only, enable_async_checkpointing=async_save,
        best_fn=_best_fn, best_mode="max", keep_checkpoints_without_metrics=True,
        preservation_policy=None if read_only else cm.AnyPreservationPolicy(policies))
    return ocp.CheckpointManager(root, options=options)


def save(mgr: ocp.CheckpointManager, step: int, *, model: Mapping, meta: Mapping, train: Mapping | None = None,
         metrics: Mapping[str, float] | None = None, force: bool = False) -> bool:
    """Save one step: ``model`` = {"params", "batch_stats"}, ``train`` = optimiser state etc., ``meta`` = JSON."""
    items = dict(model=ocp.args.StandardSave(dict(model)), meta=ocp.args.JsonSave(_jsonable(meta)))
    if train is not None:
        items["train"] = ocp.args.StandardSave(dict(train))
    return mgr.save(step, args=ocp.args.Composite(**items), metrics=dict(metrics) if metrics else None,
                    force=force)


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    return x


def resolve(path: str | os.PathLike, step: int | None = None) -> tuple[Path, int]:
    """Find ``(workdir, step)`` for a workdir, its ``checkpoints`` folder or a step folder.

    With ``step=None`` and a workdir: the best checkpoint by validation SI-SNR if one has metrics, else the latest.
    """
    p = Path(path).absolute()
    if not p.exists():
        raise CheckpointError(f"checkpoint path {str(path)!r} does not exist")
    if (p / "meta").is_dir() and (p / "model").is_dir():  # a step folder
        if not p.name.isdigit():
            raise CheckpointError(f"{str(path)!r} looks like a checkpoint but its folder name is not a step number")
        return p.parent.parent, int(p.name)
    if p.name == CKPT_DIR and not (p / CKPT_DIR).is_dir():
        p = p.parent
    if not (p / CKPT_DIR).is_dir():
        raise CheckpointError(f"{str(path)!r} holds no checkpoints (expected a workdir with a {CKPT_DIR}/ folder, "
                              f"or a step folder with model/ and meta/)")
    mgr = manager(p, read_only=True)
    steps = mgr.all_steps()
    if not steps:
        raise CheckpointError(f"{str(path)!r}: {CKPT_DIR}/ holds no complete checkpoint")
    if step is None:
        try:
            step = mgr.best_step()
        except Exception:  # no metrics recorded
            step = None
        step = mgr.latest_step() if step is None else step
    elif step not in steps:
        raise CheckpointError(f"{str(path)!r} has no checkpoint for step {step}; it has steps {sorted(steps)}")
    return p, int(step)


def read_meta(path: str | os.PathLike, step: int | None = None) -> dict:
    workdir, step = resolve(path, step)
    return dict(manager(workdir, read_only=True).restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)


def load_variables(path: str | os.PathLike, step: int | None = None) -> tuple[dict, dict]:
    """``(variables, meta)`` of a checkpoint; variables = {"params", "batch_stats"} as host numpy arrays."""
    workdir, step = resolve(path, step)
    try:
        # Restore onto this process's first device whatever the topology the checkpoint was saved from
        # (e.g. trained on 8 accelerators, loaded on a laptop): the target comes from the stored metadata.
        stored = ocp.StandardCheckpointer().metadata(workdir / CKPT_DIR / str(step) / "model").item_metadata
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), stored)
        r = manager(workdir, read_only=True).restore(
            step, args=ocp.args.Composite(model=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except Exception as e:  # corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint step {step} in {str(workdir)!r}: {e}") from e
    variables = jax.tree.map(np.asarray, dict(r.model))
    variables.setdefault("batch_stats", {})
    meta = dict(r.meta)
    meta["step"] = step
    meta["workdir"] = str(workdir)
    return variables, meta


def load_model(path: str | os.PathLike, step: int | None = None, **model_overrides):
    """``(model, variables, meta)`` ready for ``model.apply(variables, noisy)``.

    ``model_overrides`` change fields that do not touch the parameters (e.g. ``impl="real"`` for export).
    """
    from jaxse.models import get_model

    variables, meta = load_variables(path, step)
    if "model" not in meta or "name" not in meta["model"]:
        raise CheckpointError(f"checkpoint {meta['workdir']!r} step {meta['step']} has no model name in its meta")
    kwargs = dict(meta["model"].get("overrides", {}))
    kwargs.update(model_overrides)
    model = get_model(meta["model"]["name"], **kwargs)
    return model, variables, meta


def save_model(workdir: str | os.PathLike, *, model_name: str, variables: Mapping, model_overrides: Mapping | None = None,
               step: int = 0, extra_meta: Mapping | None = None, sample_rate: int = 16000) -> Path:
    """Write an inference-only checkpoint (e.g. converted weights) that ``load_model`` and the CLIs accept."""
    mgr = manager(workdir, keep=1, keep_best=False, async_save=False)
    meta = dict(extra_meta or {})
    meta["model"] = {"name": model_name, "overrides": dict(model_overrides or {})}
    meta["sample_rate"] = sample_rate
    model = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    save(mgr, step, model=model, meta=meta, force=True)
    mgr.wait_until_finished()
    mgr.close()
    return Path(workdir).absolute() / CKPT_DIR / str(step)


def model_meta(name: str, overrides: Mapping | None) -> dict:
    """The ``meta["model"]`` entry: the registry name and the constructor overrides (JSON-able)."""
    return {"name": name, "overrides": {k: (list(v) if isinstance(v, tuple) else v)
                                        for k, v in dict(overrides or {}).items()}}
