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
import shutil
import sys
import time
from pathlib import Path
from typing import Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from jaxse.errors import RunError, UsageError
from jaxse.io.jsonable import jsonable
from jaxse.signal import SAMPLE_RATE

CKPT_DIR = "checkpoints"
DAMAGED_DIR = "damaged"  # WORKDIR/damaged/<step>-<time>: checkpoints that failed to restore, kept for inspection
TMP_MARK = ".orbax-checkpoint-tmp"
BEST_METRIC = "val_si_snr"  # larger is better


class CheckpointError(UsageError):
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
    items = dict(model=ocp.args.StandardSave(dict(model)), meta=ocp.args.JsonSave(jsonable(meta)))
    if train is not None:
        items["train"] = ocp.args.StandardSave(dict(train))
    return mgr.save(step, args=ocp.args.Composite(**items), metrics=dict(metrics) if metrics else None,
                    force=force)


def _why(e: BaseException) -> str:
    """The first line of an exception (orbax/TensorStore errors run to thousands of lines)."""
    text = str(e).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(e).__name__}: {line[:300]}"


def remove_stale_temps(workdir: str | os.PathLike) -> list[Path]:
    """Delete the temporary folders of saves that never finished (a run killed mid-save); returns them."""
    root = Path(workdir) / CKPT_DIR
    stale = [p for p in root.iterdir() if TMP_MARK in p.name] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def set_aside(workdir: str | os.PathLike, step: int) -> Path:
    """Move ``checkpoints/<step>`` to ``damaged/<step>-<time>`` (kept, never deleted); returns the new path."""
    src = Path(workdir) / CKPT_DIR / str(step)
    dst = Path(workdir) / DAMAGED_DIR / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    return dst


def _train_items(state) -> tuple[dict, dict]:
    model = {"params": state.params, "batch_stats": state.batch_stats}
    train = {"opt_state": state.opt_state, "step": state.step, "rng": state.rng, "nonfinite": state.nonfinite,
             "skipped": state.skipped}
    return model, train


def restore_training(workdir: str | os.PathLike, state, *, model_meta: Mapping, log=print,
                     set_aside: bool = True):
    """Resume: the newest checkpoint of ``WORKDIR`` that restores, onto the structure and shardings of ``state`` (a
    ``TrainState``). Returns ``(state, meta)`` or ``None`` when there is no checkpoint.

    A checkpoint that fails to restore (truncated or missing files) is reported in one line, moved to
    ``WORKDIR/damaged/`` (when ``set_aside``; process 0) and the next older one is tried. A checkpoint of another
    model raises ``CheckpointError``.
    """
    workdir = Path(workdir).absolute()
    root = workdir / CKPT_DIR
    if not _on_all_processes(root.is_dir()):
        return None
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
    model_t, train_t = _train_items(abstract)
    reader = manager(workdir, read_only=True)
    for step in sorted(reader.all_steps(), reverse=True):
        try:
            meta = dict(reader.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
            if meta.get("model") != dict(model_meta):
                raise CheckpointError(f"workdir {str(workdir)!r} holds checkpoints of model {meta.get('model')}, "
                                      f"not {dict(model_meta)}: use another workdir")
            r = reader.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(model_t),
                                                             train=ocp.args.StandardRestore(train_t)))
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - damaged files: any error of orbax/TensorStore
            where = set_aside_fn(workdir, step) if set_aside else root / str(step)
            log(f"jaxse: skipped checkpoint step {step} ({_why(e)}); " +
                (f"moved to {where}" if set_aside else "left in place"))
            continue
        reader.close()
        new = type(state)(params=r.model["params"], batch_stats=r.model["batch_stats"], **r.train)
        return new, meta
    reader.close()
    return None


set_aside_fn = set_aside


def _on_all_processes(flag: bool) -> bool:
    """Process 0's ``flag`` on every process: a decision that leads into orbax's collectives must be one decision.

    Without it, a process that looks at the filesystem after process 0 has created ``checkpoints/`` takes the other
    branch, and the two processes meet in different barriers (orbax: "sync_global_devices name mismatch").
    """
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def save_training(mgr: ocp.CheckpointManager, workdir, step: int, state, *, meta: Mapping,
                  metrics: Mapping[str, float] | None = None) -> None:
    """Save a training checkpoint of ``state`` (a ``TrainState``); a failed write (full disk) raises ``RunError``
    naming the workdir and the cause, and leaves the earlier checkpoints as they were."""
    model, train = _train_items(state)
    try:
        save(mgr, step, model=model, train=train, meta=meta, metrics=metrics, force=True)
    except Exception as e:  # noqa: BLE001
        raise _write_error(workdir, step, e) from None


def finish(mgr: ocp.CheckpointManager, workdir) -> None:
    """Wait for asynchronous saves; a failed one raises ``RunError`` (see ``save_training``)."""
    try:
        mgr.wait_until_finished()
    except Exception as e:  # noqa: BLE001
        raise _write_error(workdir, None, e) from None


def _write_error(workdir, step, e: BaseException) -> RunError:
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    import errno

    full = "no space left on the device (disk full)" if (
        (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or "No space left" in str(e)) else _why(e)
    what = f"checkpoint step {step}" if step is not None else "a checkpoint"
    return RunError(f"cannot write {what} in {Path(workdir) / CKPT_DIR}: {full}; earlier checkpoints are intact, "
                    f"free space and run the same command to resume")


def resolve(path: str | os.PathLike, step: int | None = None) -> tuple[Path, int]:
    """Find ``(workdir, step)`` for a workdir, its ``checkpoints`` folder or a step folder.

    With ``step=None`` and a workdir: the best checkpoint by validation SI-SNR if one has metrics, else the latest.
    """
    if str(path).startswith("pretrained:"):
        raise CheckpointError(f"{path} is a model shipped with jaxse, not a workdir: give an explicit output=")
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


def _restore_model(workdir: Path, step: int) -> tuple[dict, dict]:
    # Restore onto this process's first device whatever the topology the checkpoint was saved from
    # (e.g. trained on 8 accelerators, loaded on a laptop): the target comes from the stored metadata.
    stored = ocp.StandardCheckpointer().metadata(workdir / CKPT_DIR / str(step) / "model").item_metadata
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), stored)
    r = manager(workdir, read_only=True).restore(
        step, args=ocp.args.Composite(model=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return dict(r.model), dict(r.meta)


def load_variables(path: str | os.PathLike, step: int | None = None) -> tuple[dict, dict]:
    """``(variables, meta)`` of a checkpoint; variables = {"params", "batch_stats"} as host numpy arrays.

    Without ``step``: the best checkpoint, else the latest; one that does not restore (damaged files) is skipped
    with a one-line note on stderr and the next is tried (best, then newest first)."""
    from jaxse.io import pretrained

    if pretrained.is_pretrained(path):  # a model shipped inside the package (jaxse/pretrained)
        return pretrained.load(str(path))
    workdir, chosen = resolve(path, step)
    if step is None and not (Path(path).absolute() / "model").is_dir():
        steps = sorted(manager(workdir, read_only=True).all_steps(), reverse=True)
        candidates = [chosen] + [s for s in steps if s != chosen]
    else:
        candidates = [chosen]
    for i, s in enumerate(candidates):
        try:
            model, meta = _restore_model(workdir, s)
            break
        except Exception as e:  # noqa: BLE001 - corrupt or foreign files
            if len(candidates) == 1:
                raise CheckpointError(f"cannot read checkpoint step {s} in {str(workdir)!r}: {_why(e)}") from None
            print(f"jaxse: skipped checkpoint step {s} in {workdir} ({_why(e)})", file=sys.stderr, flush=True)
    else:
        raise CheckpointError(f"no checkpoint in {str(workdir)!r} restores (tried steps {candidates})")
    variables = jax.tree.map(np.asarray, model)
    variables.setdefault("batch_stats", {})
    meta["step"] = s
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
               step: int = 0, extra_meta: Mapping | None = None, sample_rate: int = SAMPLE_RATE) -> Path:
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
