"""The training run: ``train_and_evaluate(cfg)`` orchestrates input, the update step, evaluation, checkpoints and
resume; every piece it calls lives in its own module (``step``, ``distributed``, ``logging``, ``jaxse.io.checkpoints``).

Resilience. Checkpoints (orbax) every ``trainer.ckpt_every`` steps, at the end and on SIGTERM/SIGINT; a run started
on a workdir with checkpoints resumes from the latest one, including the optimiser, the learning-rate schedule and
the position in the data stream.
"""
from __future__ import annotations

from jaxse.errors import RunError

import ctypes
import gc
import signal as signal_lib
import time
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxse import config, losses, optim
from jaxse.io import checkpoints
from jaxse.io.atomic import check_writable_dir
from jaxse.signal import SAMPLE_RATE
from jaxse.models import count_params, get_model
from jaxse.train.distributed import (
    AXIS,
    global_batch,
    maybe_initialize_distributed,
    replicate,
    stop_requested,
    to_host,
)
from jaxse.train.logging import MetricLog
from jaxse.train.step import create_state, make_eval_step, make_train_step


class TrainingError(RunError):
    """The run cannot go on (too many non-finite updates, inconsistent set-up); the message says why."""


def run_eval(eval_step, variables, data_cfg: dict, split: str, mesh: Mesh, *, keep_audio: bool = False) -> dict:
    """Validation/test pass over a whole eval split. Returns mean SI-SNR of noisy and enhanced (and, with
    ``keep_audio``, the host arrays ``noisy``, ``clean``, ``enhanced: float32[examples, samples]``)."""
    from jaxse.data.pipeline import batches

    n_local = jax.local_device_count()
    out = {k: [] for k in ("noisy", "clean", "enhanced", "si_snr", "si_snr_noisy")}
    for b in batches(data_cfg, split=split, seed=0, process_index=jax.process_index(),
                     process_count=jax.process_count()):
        rows = b["noisy"].shape[0]
        pad = (-rows) % n_local  # every device gets the same number of rows
        noisy = np.pad(b["noisy"], [(0, pad), (0, 0)])
        clean = np.pad(b["clean"], [(0, pad), (0, 0)])
        g = global_batch({"noisy": noisy, "clean": clean}, mesh)
        enh, s_enh, s_noisy = eval_step(variables, g["noisy"], g["clean"])
        valid = np.concatenate([np.ones(rows, bool), np.zeros(pad, bool)])
        valid = to_host(global_batch({"v": valid}, mesh)["v"])
        out["si_snr"].append(to_host(s_enh)[valid])
        out["si_snr_noisy"].append(to_host(s_noisy)[valid])
        if keep_audio:
            out["enhanced"].append(to_host(enh)[valid])
            out["noisy"].append(to_host(g["noisy"])[valid])
            out["clean"].append(to_host(g["clean"])[valid])
    res = {k: np.concatenate(v) for k, v in out.items() if v}
    res["mean_si_snr"] = float(np.mean(res["si_snr"]))
    res["mean_si_snr_noisy"] = float(np.mean(res["si_snr_noisy"]))
    return res


def release_freed_memory() -> None:
    """Drop JAX's tracing and lowering caches and give the heap pages that XLA's compiler freed back to the OS
    (``gc``, ``jax.clear_caches``, glibc ``malloc_trim``; the trim is a no-op elsewhere). Call it after compiling
    the step ahead (``jit(...).lower(...).compile()``): the compiled step that the caller holds stays valid, any
    other jitted function is traced and compiled again on its next call (or read from the persistent cache).

    Compiling the DCCRN-CL step leaves ~1.3 GB of freed but mapped heap behind and the caches hold another
    ~0.55 GB (RSS 2.7 GB after compiling, 1.4 GB after the trim, 0.85 GB after dropping the caches), which would
    otherwise sit under the step's own buffers at the peak (experiments/bench/RESULTS.md).
    """
    gc.collect()
    jax.clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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
    maybe_initialize_distributed(cfg.distributed)
    from jaxse import cache
    from jaxse.data.pipeline import batches, per_host_batch_size

    cache.enable(cfg.trainer.compile_cache)

    workdir = Path(cfg.workdir).absolute()
    pi, pc = jax.process_index(), jax.process_count()
    devices = np.array(jax.devices())
    mesh = Mesh(devices, (AXIS,))
    data_cfg, tcfg, ocfg = cfg.data, cfg.trainer, cfg.optim
    if data_cfg.batch_size % len(devices):
        raise config.ConfigError(f"bad value for data.batch_size: {data_cfg.batch_size} is not a multiple of "
                                 f"the {len(devices)} devices")
    per_host_batch_size(data_cfg, pc)
    config.check_paths(data_cfg)  # a missing data folder is named before anything is written
    init_source = None  # trainer.init_from, read (and so checked) before anything is written; a resume ignores it
    if tcfg.init_from is not None and not (workdir / checkpoints.CKPT_DIR).is_dir():
        init_source = checkpoints.load_variables(tcfg.init_from)
        _check_init_model(tcfg.init_from, init_source[1], cfg.model_name)
    if pi == 0:
        check_writable_dir(workdir, "workdir")
        workdir.mkdir(parents=True, exist_ok=True)
        config.save_yaml(cfg, workdir / "config.yaml")
        for stale in checkpoints.remove_stale_temps(workdir):
            _print0(f"jaxse.train: removed {stale.name}, the unfinished save of a killed run")

    # ---------------------------------------------------------------- model and optimiser
    name, overrides = cfg.model_name, cfg.model_options
    model = get_model(name, **overrides, conv_lowering=tcfg.conv_lowering, axis_name=AXIS)
    eval_model = get_model(name, **overrides, conv_lowering=tcfg.conv_lowering)
    tx = optim.make_optimizer(lr=ocfg.lr, clip_norm=ocfg.clip_norm, warmup_steps=ocfg.warmup_steps,
                              schedule=ocfg.schedule, total_steps=tcfg.max_steps, min_lr=ocfg.min_lr)
    loss_fn = losses.get_loss(cfg.loss)
    replicated = NamedSharding(mesh, P())
    state = jax.jit(lambda r: create_state(eval_model, tx, r), out_shardings=replicated)(
        jax.random.PRNGKey(cfg.seed))
    n_params = count_params(state.params)
    _print0(f"jaxse.train: {name} {overrides}, {n_params:,} parameters, {len(devices)} devices on {pc} "
            f"process(es), global batch {data_cfg.batch_size}, workdir {workdir}")

    # ---------------------------------------------------------------- checkpoints and resume
    meta_base = {"model": checkpoints.model_meta(name, overrides), "sample_rate": SAMPLE_RATE, "name": cfg.name}
    sched = {"best": None, "bad_evals": 0}
    restored = checkpoints.restore_training(workdir, state, model_meta=meta_base["model"], log=_print0,
                                            set_aside=pi == 0)
    if restored is not None:
        state, meta = restored
        sched = meta.get("schedule", sched)
        _print0(f"jaxse.train: resumed from step {int(state.step)} ({workdir / checkpoints.CKPT_DIR})")
    elif tcfg.init_from is not None:
        state, meta_base["init_from"] = init_weights(state, tcfg.init_from, name, replicated, loaded=init_source)
        _print0(f"jaxse.train: weights from {tcfg.init_from} (step {meta_base['init_from']['step']}), "
                f"fresh optimiser")
    start = int(state.step)
    mgr = checkpoints.manager(workdir, keep=tcfg.keep)
    saved = {"step": mgr.latest_step()}

    def save(step: int, metrics: dict | None = None):
        if saved["step"] == step:  # already saved at this step (a stop right after a checkpoint step)
            return
        meta = dict(meta_base, schedule=sched, data_position=step, lr=optim.get_learning_rate(state.opt_state))
        checkpoints.save_training(mgr, workdir, step, state, meta=meta, metrics=metrics)
        saved["step"] = step

    # ---------------------------------------------------------------- steps, input, signals
    train_step = make_train_step(model, tx, loss_fn, mesh)
    eval_step = make_eval_step(eval_model, mesh)
    log = MetricLog(workdir, pi == 0, resume_step=start)
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    old = {s: signal_lib.signal(s, on_signal) for s in (signal_lib.SIGTERM, signal_lib.SIGINT)}
    max_steps = tcfg.max_steps
    stream: Iterator[dict] = batches(data_cfg, split="train", seed=cfg.seed, process_index=pi,
                                     process_count=pc, start_step=start) if start < max_steps else iter(())
    bar = None
    if pi == 0 and tcfg.progress and start < max_steps:
        from tqdm import tqdm

        bar = tqdm(total=max_steps, initial=start, desc=cfg.name, unit="step", dynamic_ncols=True)
    summary: dict[str, Any] = {"workdir": str(workdir), "params": n_params, "start_step": start}
    # PESQ/STOI of each validation run in a worker process; logged when done, so the devices never wait for them.
    host_pool = None
    if pi == 0 and tcfg.report_workers > 0:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        host_pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    pending: list = []

    def collect(wait: bool = False):
        for item in list(pending):
            at, fut = item
            if wait or fut.done():
                pending.remove(item)
                try:
                    log.write(at, "valid_quality", fut.result())
                except Exception as e:  # a metric worker failure must not stop training
                    _print0(f"jaxse.train: validation metrics of step {at} failed: {e}")
    # The host never waits for the device between steps: a step is dispatched, the next batch is read and put on
    # the devices while it runs, and metrics are fetched only when logged. The non-finite guard reads the previous
    # step's flag, which is ready by then (the current step needs that step's state).
    t_input = t_host = t_blocked = 0.0
    t_first = None
    t_loop = time.perf_counter()
    consecutive = int(state.nonfinite)
    last_metrics: dict = {}
    val = None
    failed = True

    def check_finite(at: int, finite) -> None:
        nonlocal consecutive
        consecutive = 0 if int(finite) else consecutive + 1
        if consecutive >= tcfg.max_nonfinite:
            raise TrainingError(f"{consecutive} consecutive non-finite losses/gradients at step {at} "
                                f"(updates skipped); lower optim.lr or check the data")

    try:
        step = start
        next_batch = global_batch(next(stream), mesh) if start < max_steps else None
        t_compile = time.perf_counter()
        if next_batch is not None:  # compiled ahead, so that the compiler's freed heap goes back before the step runs
            train_step = train_step.lower(state, next_batch).compile()
            release_freed_memory()
        t_compile = time.perf_counter() - t_compile
        unchecked = None  # (step, finite flag on the device) of the step before
        while step < max_steps:
            t0 = time.perf_counter()
            state, metrics = train_step(state, next_batch)
            step += 1
            t1 = time.perf_counter()
            if t_first is None:
                t_first = t1 - t0 + t_compile  # tracing + compilation (or cache load) + the first step
                t_loop = t1
            else:
                t_host += t1 - t0
            signalled_before = stop["signal"] is not None
            next_batch = global_batch(next(stream), mesh) if step < max_steps else None
            # A signal that arrives while the next batch is read stops after that batch's step (what is read is
            # trained on, as without prefetching); at any other moment it stops after this step.
            defer = stop["signal"] is not None and not signalled_before and next_batch is not None
            t2 = time.perf_counter()
            t_input += t2 - t1
            if unchecked is not None:
                check_finite(*unchecked)
            unchecked = (step, metrics["finite"])
            is_log = step % tcfg.log_every == 0 or step == max_steps
            if bar is not None:
                bar.update(1)
            if is_log:
                t3 = time.perf_counter()
                metrics = jax.device_get(metrics)
                t_blocked += time.perf_counter() - t3
                check_finite(*unchecked)
                unchecked = None
                last_metrics = {k: float(v) for k, v in metrics.items()}
                last_metrics["lr"] = optim.get_learning_rate(state.opt_state)
                last_metrics["skipped_total"] = int(state.skipped)
                log.write(step, "train", last_metrics)
                if bar is not None:
                    bar.set_postfix(loss=f"{last_metrics['loss']:.3f}", si_snr=f"{last_metrics['si_snr']:.2f}")
            ckpt_metrics = None
            if step % tcfg.eval_every == 0 or step == max_steps:
                val = run_eval(eval_step, {"params": state.params, "batch_stats": state.batch_stats},
                               data_cfg, "valid", mesh, keep_audio=True)  # collective: every process
                if pi == 0:
                    log.examples(step, val)
                    if host_pool is not None:
                        from jaxse import scoring

                        pending.append((step, host_pool.submit(scoring.validation_metrics, val["clean"],
                                                               val["enhanced"], SAMPLE_RATE)))
                ckpt_metrics = {checkpoints.BEST_METRIC: val["mean_si_snr"]}
                new_lr = None
                if ocfg.schedule == "plateau":
                    sched, new_lr = plateau_update(sched, val["mean_si_snr"],
                                                   optim.get_learning_rate(state.opt_state),
                                                   patience=ocfg.plateau_patience, factor=ocfg.plateau_factor,
                                                   min_lr=ocfg.min_lr)
                if new_lr is not None:
                    state = state.replace(opt_state=replicate(optim.set_learning_rate(state.opt_state, new_lr),
                                                              replicated))
                    _print0(f"jaxse.train: validation plateau, learning rate -> {new_lr:g}")
                log.write(step, "valid", {"si_snr": val["mean_si_snr"], "si_snr_noisy": val["mean_si_snr_noisy"],
                                          "si_snr_improvement": val["mean_si_snr"] - val["mean_si_snr_noisy"]})
                if bar is None:
                    _print0(f"step {step}: train loss {float(metrics['loss']):.3f}, valid SI-SNR "
                            f"{val['mean_si_snr']:.2f} dB (noisy {val['mean_si_snr_noisy']:.2f} dB)")
            if ckpt_metrics is not None or step % tcfg.ckpt_every == 0 or step == max_steps:
                save(step, ckpt_metrics)
            collect()
            if stop_requested(stop, defer=defer):
                save(step, ckpt_metrics)
                checkpoints.finish(mgr, workdir)
                _print0(f"jaxse.train: stopped by signal {stop['signal']} at step {step}; checkpoint saved, "
                        f"run the same command to resume")
                summary.update(stopped_at=step, signal=stop["signal"])
                failed = False
                return summary
        checkpoints.finish(mgr, workdir)
        failed = False
    finally:
        # Cleanup must not hide the error that ended the run (e.g. a full disk also fails the log writers).
        for cleanup in (lambda: collect(wait=True), lambda: host_pool and host_pool.shutdown(),
                        lambda: bar and bar.close(), lambda: [signal_lib.signal(s, h) for s, h in old.items()],
                        lambda: checkpoints.finish(mgr, workdir), log.close):
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001
                if not failed:
                    raise
                _print0(f"jaxse.train: (while stopping: {type(e).__name__}: {str(e).splitlines()[0][:200]})")

    n_timed = max_steps - start - 1
    if n_timed > 0:
        wall = (time.perf_counter() - t_loop) / n_timed
        summary.update(step_seconds=wall, input_seconds=t_input / n_timed, host_seconds=t_host / n_timed,
                       blocked_seconds=t_blocked / n_timed, compile_seconds=t_first)
        _print0(f"jaxse.train: {wall:.3f} s/step after the first ({t_first:.1f} s: trace + compile or cache load); "
                f"per step: input {1e3 * t_input / n_timed:.1f} ms (overlapped with the device), dispatch "
                f"{1e3 * t_host / n_timed:.1f} ms, metric fetch {1e3 * t_blocked / n_timed:.1f} ms")
    summary.update(steps=max_steps, skipped=int(state.skipped), train=last_metrics,
                   valid_si_snr=None if val is None else val["mean_si_snr"])
    if tcfg.final_report:
        summary["test"] = final_report(cfg, workdir, mesh)
    mgr.close()
    return summary


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


def plateau_update(sched: dict, value: float, lr: float, *, patience: int, factor: float, min_lr: float):
    """The learning-rate schedule: after ``patience`` validations without a better ``value`` the rate is multiplied
    by ``factor`` (not below ``min_lr``). Returns ``(new schedule state, new rate or None)``."""
    if sched["best"] is None or value > sched["best"] + 1e-3:  # None: no validation yet
        return {"best": value, "bad_evals": 0}, None
    sched = {"best": sched["best"], "bad_evals": sched["bad_evals"] + 1}
    if sched["bad_evals"] >= patience:
        return {"best": sched["best"], "bad_evals": 0}, max(lr * factor, min_lr)
    return sched, None


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
