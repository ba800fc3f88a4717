"""The training run: ``train_and_evaluate(cfg)`` reads as set-up, restore-or-init and the loop; what the loop needs
lives in small objects, each owning one concern (``checkpointing.Checkpointer``, ``stop.StopSignal``,
``validation.BackgroundScores``, ``timing.StepTimer``, ``schedule.Plateau``), the pure update step in ``step``.

Resilience. Checkpoints (orbax) every ``trainer.ckpt_every`` steps, at each validation, at the end and on
SIGTERM/SIGINT; a run started on a workdir with checkpoints resumes from the latest one, including the optimiser, the
learning-rate schedule and the position in the data stream.
"""
from __future__ import annotations

from jaxse.errors import RunError

import ctypes
import gc
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxse import config, losses, optim
from jaxse.io import checkpoints
from jaxse.io.atomic import check_writable_dir
from jaxse.signal import SAMPLE_RATE
from jaxse.models import count_params, get_model
from jaxse.train.checkpointing import Checkpointer
from jaxse.train.distributed import AXIS, global_batch, maybe_initialize_distributed, replicate
from jaxse.train.logging import MetricLog
from jaxse.train.schedule import Plateau
from jaxse.train.step import create_state, make_eval_step, make_train_step
from jaxse.train.stop import StopSignal
from jaxse.train.timing import StepTimer
from jaxse.train.validation import BackgroundScores, run_eval

__all__ = ["TrainingError", "train_and_evaluate", "run_eval", "init_weights", "final_report", "create_state",
           "release_freed_memory"]


class TrainingError(RunError):
    """The run cannot go on (too many non-finite updates, inconsistent set-up); the message says why."""


def _print0(*args):
    if jax.process_index() == 0:
        print(*args, flush=True)


def train_and_evaluate(cfg: config.TrainConfig) -> dict:
    """Train (or resume) the run described by ``cfg`` (``jaxse.config.compose``); returns a summary dict.

    What each stop leaves behind: every ``trainer.ckpt_every`` steps, at each validation, at the end and on
    SIGTERM/SIGINT a complete checkpoint (orbax writes a temporary folder and renames it). A rerun of the same
    command resumes from the newest checkpoint that restores: damaged ones are moved to ``WORKDIR/damaged/``, stale
    temporary folders of a killed save are removed, and ``metrics.jsonl`` continues from the restored step.
    """
    # ---------------------------------------------------------------- set-up: every check before anything is written
    maybe_initialize_distributed(cfg.distributed)
    from jaxse import cache

    cache.enable(cfg.trainer.compile_cache)
    workdir = Path(cfg.workdir).absolute()
    mesh = Mesh(np.array(jax.devices()), (AXIS,))
    init_source = _check_setup(cfg, workdir, mesh.size)
    if jax.process_index() == 0:
        _prepare_workdir(cfg, workdir)

    # ---------------------------------------------------------------- model, optimiser, steps
    model = get_model(cfg.model_name, **cfg.model_options, conv_lowering=cfg.trainer.conv_lowering, axis_name=AXIS)
    eval_model = get_model(cfg.model_name, **cfg.model_options, conv_lowering=cfg.trainer.conv_lowering)
    ocfg = cfg.optim
    tx = optim.make_optimizer(lr=ocfg.lr, clip_norm=ocfg.clip_norm, warmup_steps=ocfg.warmup_steps,
                              schedule=ocfg.schedule, total_steps=cfg.trainer.max_steps, min_lr=ocfg.min_lr)
    replicated = NamedSharding(mesh, P())
    state = jax.jit(lambda r: create_state(eval_model, tx, r), out_shardings=replicated)(
        jax.random.PRNGKey(cfg.seed))
    n_params = count_params(state.params)
    _print0(f"jaxse.train: {cfg.model_name} {cfg.model_options}, {n_params:,} parameters, {mesh.size} devices on "
            f"{jax.process_count()} process(es), global batch {cfg.data.batch_size}, workdir {workdir}")
    train_step = make_train_step(model, tx, losses.get_loss(cfg.loss, **dict(cfg.loss_options)), mesh)
    eval_step = make_eval_step(eval_model, mesh)

    # ---------------------------------------------------------------- restore or init
    state, ckpt, plateau = _restore_or_init(cfg, workdir, state, replicated, init_source)

    # ---------------------------------------------------------------- the loop
    start = int(state.step)
    summary: dict[str, Any] = {"workdir": str(workdir), "params": n_params, "start_step": start}
    loop = TrainLoop(cfg, workdir, mesh, state, train_step, eval_step, ckpt, plateau)
    stopped = loop.run()
    summary.update(stopped or {})
    if stopped:
        return summary
    n_timed = cfg.trainer.max_steps - start - 1
    if n_timed > 0:
        summary.update(loop.timer.summary(n_timed))
        _print0("jaxse.train: " + StepTimer.describe(summary))
    summary.update(steps=cfg.trainer.max_steps, skipped=int(loop.state.skipped), train=loop.last_metrics,
                   valid_si_snr=None if loop.val is None else loop.val["mean_si_snr"])
    if cfg.trainer.final_report:
        summary["test"] = final_report(cfg, workdir, mesh)
    ckpt.close()
    return summary


def _check_setup(cfg: config.TrainConfig, workdir: Path, n_devices: int):
    """Errors a run can find before it writes anything; returns ``trainer.init_from``'s ``(variables, meta)`` for a
    new run that names one (read here, so that a missing source is found now), else None."""
    from jaxse.data.pipeline import per_host_batch_size

    if cfg.data.batch_size % n_devices:
        raise config.ConfigError(f"bad value for data.batch_size: {cfg.data.batch_size} is not a multiple of "
                                 f"the {n_devices} devices")
    per_host_batch_size(cfg.data, jax.process_count())
    config.check_paths(cfg.data)
    if cfg.trainer.init_from is None or (workdir / checkpoints.CKPT_DIR).is_dir():  # a resume ignores init_from
        return None
    source = checkpoints.load_variables(cfg.trainer.init_from)
    _check_init_model(cfg.trainer.init_from, source[1], cfg.model_name)
    return source


def _prepare_workdir(cfg: config.TrainConfig, workdir: Path) -> None:
    check_writable_dir(workdir, "workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    config.save_yaml(cfg, workdir / "config.yaml")
    for stale in checkpoints.remove_stale_temps(workdir):
        _print0(f"jaxse.train: removed {stale.name}, the unfinished save of a killed run")


def _restore_or_init(cfg: config.TrainConfig, workdir: Path, state, replicated, init_source):
    """The newest checkpoint that restores (state and plateau rule), else ``trainer.init_from``'s weights, else
    ``state`` as initialised. Returns ``(state, Checkpointer, Plateau)``."""
    meta = {"model": checkpoints.model_meta(cfg.model_name, cfg.model_options), "sample_rate": SAMPLE_RATE,
            "name": cfg.name}
    saved_schedule = None
    restored = checkpoints.restore_training(workdir, state, model_meta=meta["model"], log=_print0,
                                            set_aside=jax.process_index() == 0)
    if restored is not None:
        state, saved_meta = restored
        saved_schedule = saved_meta.get("schedule")
        _print0(f"jaxse.train: resumed from step {int(state.step)} ({workdir / checkpoints.CKPT_DIR})")
    elif cfg.trainer.init_from is not None:
        state, meta["init_from"] = init_weights(state, cfg.trainer.init_from, cfg.model_name, replicated,
                                                loaded=init_source)
        _print0(f"jaxse.train: weights from {cfg.trainer.init_from} (step {meta['init_from']['step']}), "
                f"fresh optimiser")
    ocfg = cfg.optim
    plateau = Plateau(patience=ocfg.plateau_patience, factor=ocfg.plateau_factor, min_lr=ocfg.min_lr,
                      saved=saved_schedule)
    return state, Checkpointer(workdir, meta=meta, keep=cfg.trainer.keep), plateau


class NonFiniteGuard:
    """Counts consecutive skipped (non-finite) updates; ``trainer.max_nonfinite`` of them stop the run."""

    def __init__(self, limit: int, consecutive: int = 0):
        self.limit, self.consecutive = limit, consecutive

    def check(self, step: int, finite) -> None:
        """``finite``: the step's flag (reading it waits for that step on the device)."""
        self.consecutive = 0 if int(finite) else self.consecutive + 1
        if self.consecutive >= self.limit:
            raise TrainingError(f"{self.consecutive} consecutive non-finite losses/gradients at step {step} "
                                f"(updates skipped); lower optim.lr or check the data")


class TrainLoop:
    """The loop's state (``state``, the next batch, the last metrics and validation) and the objects it drives.

    The host never waits for the device between steps: a step is dispatched, the next batch is read and put on the
    devices while it runs, and metrics are fetched only when logged. The non-finite guard reads the previous step's
    flag, which is ready by then (the current step needs that step's state).
    """

    def __init__(self, cfg, workdir: Path, mesh: Mesh, state, train_step, eval_step, ckpt: Checkpointer,
                 plateau: Plateau):
        self.cfg, self.mesh, self.state, self.ckpt, self.plateau = cfg, mesh, state, ckpt, plateau
        self.train_step, self.eval_step = train_step, eval_step
        self.lead = jax.process_index() == 0
        self.log = MetricLog(workdir, self.lead, resume_step=int(state.step))
        self.stop, self.timer = StopSignal(), StepTimer()
        self.guard = NonFiniteGuard(cfg.trainer.max_nonfinite, consecutive=int(state.nonfinite))
        self.scores = BackgroundScores(self.log, enabled=self.lead and cfg.trainer.report_workers > 0,
                                       sample_rate=SAMPLE_RATE, report=_print0)
        self.bar = None
        self.last_metrics: dict = {}
        self.val: dict | None = None

    def run(self) -> dict | None:
        """Train up to ``trainer.max_steps``; returns ``{"stopped_at", "signal"}`` when a signal stopped it."""
        from jaxse.data.pipeline import batches

        cfg, start, max_steps = self.cfg, int(self.state.step), self.cfg.trainer.max_steps
        self.stop.install()
        stream = batches(cfg.data, split="train", seed=cfg.seed, process_index=jax.process_index(),
                         process_count=jax.process_count(), start_step=start) if start < max_steps else iter(())
        if self.lead and cfg.trainer.progress and start < max_steps:
            from tqdm import tqdm

            self.bar = tqdm(total=max_steps, initial=start, desc=cfg.name, unit="step", dynamic_ncols=True)
        failed = True
        try:
            stopped = self._steps(stream, start)
            if stopped is None:
                self.ckpt.finish()
            failed = False
            return stopped
        finally:
            if hasattr(stream, "close"):  # stop the input threads before the checkpoints are finished
                stream.close()
            self._close(failed)

    def _steps(self, stream, step: int) -> dict | None:
        max_steps = self.cfg.trainer.max_steps
        batch = global_batch(next(stream), self.mesh) if step < max_steps else None
        with self.timer.timing("compile"):  # ahead, so that the compiler's freed heap goes back before the step runs
            if batch is not None:
                self.train_step = self.train_step.lower(self.state, batch).compile()
                release_freed_memory()
        unchecked = None  # (step, finite flag on the device) of the step before
        while step < max_steps:
            with self.timer.step():
                self.state, metrics = self.train_step(self.state, batch)
            step += 1
            with self.timer.timing("input"):
                signalled_before = self.stop.signal is not None
                batch = global_batch(next(stream), self.mesh) if step < max_steps else None
                # A signal that arrives while the next batch is read stops after that batch's step (what is read is
                # trained on, as without prefetching); at any other moment it stops after this step.
                defer = self.stop.signal is not None and not signalled_before and batch is not None
            if unchecked is not None:
                self.guard.check(*unchecked)
            unchecked = (step, metrics["finite"])
            if self.bar is not None:
                self.bar.update(1)
            if step % self.cfg.trainer.log_every == 0 or step == max_steps:
                metrics, unchecked = self._log_train(step, metrics, unchecked), None
            stopped = self._after_step(step, metrics, defer)
            if stopped is not None:
                return stopped
        return None

    def _log_train(self, step: int, metrics, unchecked) -> dict:
        with self.timer.timing("blocked"):
            metrics = jax.device_get(metrics)
        self.guard.check(*unchecked)
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        self.last_metrics["lr"] = optim.get_learning_rate(self.state.opt_state)
        self.last_metrics["skipped_total"] = int(self.state.skipped)
        self.log.write(step, "train", self.last_metrics)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{self.last_metrics['loss']:.3f}", si_snr=f"{self.last_metrics['si_snr']:.2f}")
        return metrics

    def _after_step(self, step: int, metrics, defer: bool) -> dict | None:
        """Validation, checkpoint and the stop signal after ``step``; returns the stop record when it stops."""
        tcfg = self.cfg.trainer
        ckpt_metrics = None
        if step % tcfg.eval_every == 0 or step == tcfg.max_steps:
            ckpt_metrics = {checkpoints.BEST_METRIC: self._validate(step, metrics)}
        if ckpt_metrics is not None or step % tcfg.ckpt_every == 0 or step == tcfg.max_steps:
            self.ckpt.save(step, self.state, schedule=self.plateau.state(), metrics=ckpt_metrics)
        self.scores.collect()
        if not self.stop.requested(defer=defer):
            return None
        self.ckpt.save(step, self.state, schedule=self.plateau.state(), metrics=ckpt_metrics)
        self.ckpt.finish()
        _print0(f"jaxse.train: stopped by signal {self.stop.signal} at step {step}; checkpoint saved, "
                f"run the same command to resume")
        return {"stopped_at": step, "signal": self.stop.signal}

    def _validate(self, step: int, metrics) -> float:
        """SI-SNR of the validation split (every process), PESQ/STOI submitted, the plateau rule; returns SI-SNR."""
        val = self.val = run_eval(self.eval_step, {"params": self.state.params, "batch_stats": self.state.batch_stats},
                                  self.cfg.data, "valid", self.mesh, keep_audio=True)
        if self.lead:
            self.log.examples(step, val)
            self.scores.submit(step, val["clean"], val["enhanced"])
        if self.cfg.optim.schedule == "plateau":
            new_lr = self.plateau.update(val["mean_si_snr"], optim.get_learning_rate(self.state.opt_state))
            if new_lr is not None:
                opt_state = optim.set_learning_rate(self.state.opt_state, new_lr)
                self.state = self.state.replace(opt_state=replicate(opt_state, NamedSharding(self.mesh, P())))
                _print0(f"jaxse.train: validation plateau, learning rate -> {new_lr:g}")
        self.log.write(step, "valid", {"si_snr": val["mean_si_snr"], "si_snr_noisy": val["mean_si_snr_noisy"],
                                       "si_snr_improvement": val["mean_si_snr"] - val["mean_si_snr_noisy"]})
        if self.bar is None:
            _print0(f"step {step}: train loss {float(metrics['loss']):.3f}, valid SI-SNR "
                    f"{val['mean_si_snr']:.2f} dB (noisy {val['mean_si_snr_noisy']:.2f} dB)")
        return val["mean_si_snr"]

    def _close(self, failed: bool) -> None:
        """Every clean-up runs; one that fails raises, unless the run failed already (a full disk also fails the
        log writers: the error that ended the run is the one to report)."""
        for cleanup in (lambda: self.scores.collect(wait=True), self.scores.shutdown,
                        lambda: self.bar and self.bar.close(), self.stop.restore, self.ckpt.finish, self.log.close):
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001
                if not failed:
                    raise
                _print0(f"jaxse.train: (while stopping: {type(e).__name__}: {str(e).splitlines()[0][:200]})")


def release_freed_memory() -> None:
    """Drop JAX's tracing and lowering caches and give the heap pages that XLA's compiler freed back to the OS
    (``gc``, ``jax.clear_caches``, glibc ``malloc_trim``; the trim is a no-op elsewhere). Call it after compiling
    the step ahead (``jit(...).lower(...).compile()``): the compiled step that the caller holds stays valid, any
    other jitted function is traced and compiled again on its next call (or read from the persistent cache).

    Compiling a DCCRN-sized step leaves freed but mapped heap behind and the caches hold more, which would otherwise
    sit under the step's own buffers at the peak (the figures: experiments/bench/RESULTS.md, 2026-12-01).
    """
    gc.collect()
    jax.clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _check_init_model(spec: str, meta: dict, model_name: str) -> None:
    theirs = (meta.get("model") or {}).get("name")
    if theirs != model_name:
        raise config.ConfigError(f"bad value for trainer.init_from: {spec!r} holds model {theirs!r}, "
                                 f"this run trains {model_name!r}")


def init_weights(state, spec: str, model_name: str, sharding, loaded: tuple | None = None) -> tuple[Any, dict]:
    """``state`` with ``params``/``batch_stats`` taken from the checkpoint ``spec`` (``trainer.init_from``: a
    workdir, a checkpoint folder or ``pretrained:NAME``), everything else (optimiser, step, rng) as given. The
    checkpoint must hold the same model: same registry name, same parameter tree and shapes (options that do not
    touch the weights, such as ``compute_dtype``, may differ). ``loaded``: ``load_variables(spec)`` when the caller
    has read it already. Returns ``(state, {"checkpoint", "step"})``."""
    from jaxse.io.checkpoints import CheckpointError

    variables, meta = loaded if loaded is not None else checkpoints.load_variables(spec)
    _check_init_model(spec, meta, model_name)
    new = {}
    for key in ("params", "batch_stats"):
        want, have = getattr(state, key), variables.get(key, {})
        flat_w = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(want)}
        flat_h = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(have)}
        missing, extra = sorted(set(flat_w) - set(flat_h)), sorted(set(flat_h) - set(flat_w))
        shapes = [k for k in flat_w.keys() & flat_h.keys() if tuple(flat_w[k].shape) != tuple(np.shape(flat_h[k]))]
        if missing or extra or shapes:
            first = min(shapes) if shapes else None
            what = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra else
                    f"shape of {first} is {np.shape(flat_h[first])}, not {tuple(flat_w[first].shape)}")
            raise CheckpointError(f"trainer.init_from {spec!r} does not fit model {model_name!r} "
                                  f"({key}: {what}); are the model options the same?")
        cast = jax.tree_util.tree_map_with_path(
            lambda k, w: np.asarray(flat_h[jax.tree_util.keystr(k)], dtype=w.dtype), want)
        new[key] = replicate(cast, sharding)
    return state.replace(**new), {"checkpoint": str(spec), "step": int(meta.get("step", 0))}


def final_report(cfg: dict, workdir: Path, mesh: Mesh) -> dict:
    """Enhance the test split with the best checkpoint; PESQ-WB, STOI and SI-SNR next to the noisy input."""
    model, variables, meta = checkpoints.load_model(workdir)
    eval_step = make_eval_step(model, mesh)
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    res = run_eval(eval_step, variables, cfg.data, "test", mesh, keep_audio=True)
    if jax.process_index() != 0:
        return {}
    from jaxse import scoring

    items = [(f"test_{i:03d}", c, n, e) for i, (c, n, e) in enumerate(zip(res["clean"], res["noisy"], res["enhanced"]))]
    rows = scoring.score_pairs(items, sample_rate=SAMPLE_RATE, workers=cfg.trainer.report_workers,
                                with_dnsmos=cfg.trainer.report_dnsmos)
    summary = scoring.summarize(rows)
    table = scoring.format_table(summary)
    print(f"\nTest split ({len(items)} mixtures), checkpoint step {meta['step']}:\n{table}", flush=True)
    scoring.write_csv(rows, workdir / "test_metrics.csv")
    scoring.write_json(summary, workdir / "test_summary.json")
    return summary
