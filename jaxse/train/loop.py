"""The training run: ``train_and_evaluate(cfg)`` orchestrates input, the update step, evaluation, checkpoints and
resume; every piece it calls lives in its own module (``step``, ``distributed``, ``logging``, ``jaxse.io.checkpoints``).

Resilience. Checkpoints (orbax) every ``trainer.ckpt_every`` steps, at the end and on SIGTERM/SIGINT; a run started
on a workdir with checkpoints resumes from the latest one, including the optimiser, the learning-rate schedule and
the position in the data stream.
"""
from __future__ import annotations

import math
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
from jaxse.train.step import TrainState, create_state, make_eval_step, make_train_step


class TrainingError(RuntimeError):
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


def _print0(*args):
    if jax.process_index() == 0:
        print(*args, flush=True)


def train_and_evaluate(cfg: dict) -> dict:
    """Train (or resume) the run described by the resolved config ``cfg``; returns a summary dict."""
    maybe_initialize_distributed(cfg["distributed"])
    from jaxse.data.pipeline import batches, per_host_batch_size

    workdir = Path(cfg["workdir"]).absolute()
    pi, pc = jax.process_index(), jax.process_count()
    devices = np.array(jax.devices())
    mesh = Mesh(devices, (AXIS,))
    data_cfg, tcfg, ocfg = cfg["data"], cfg["trainer"], cfg["optim"]
    if data_cfg["batch_size"] % len(devices):
        raise config.ConfigError(f"bad value for data.batch_size: {data_cfg['batch_size']} is not a multiple of "
                                 f"the {len(devices)} devices")
    per_host_batch_size(data_cfg, pc)
    if pi == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        config.save_yaml(cfg, workdir / "config.yaml")

    # ---------------------------------------------------------------- model and optimiser
    from jaxse import layers

    layers.DEFAULT_CONV_LOWERING = tcfg["conv_lowering"]  # read when the steps are traced
    name, overrides = config.model_options(cfg)
    model = get_model(name, **overrides, axis_name=AXIS)
    eval_model = get_model(name, **overrides)
    tx = optim.make_optimizer(lr=ocfg["lr"], clip_norm=ocfg["clip_norm"], warmup_steps=ocfg["warmup_steps"])
    loss_fn = losses.get_loss(cfg["loss"])
    replicated = NamedSharding(mesh, P())
    state = jax.jit(lambda r: create_state(eval_model, tx, r), out_shardings=replicated)(
        jax.random.PRNGKey(cfg["seed"]))
    n_params = count_params(state.params)
    _print0(f"jaxse.train: {name} {overrides}, {n_params:,} parameters, {len(devices)} devices on {pc} "
            f"process(es), global batch {data_cfg['batch_size']}, workdir {workdir}")

    # ---------------------------------------------------------------- checkpoints and resume
    mgr = checkpoints.manager(workdir, keep=tcfg["keep"])
    meta_base = {"model": checkpoints.model_meta(name, overrides), "sample_rate": 16000, "name": cfg["name"]}
    sched = {"best": -math.inf, "bad_evals": 0}
    if mgr.latest_step() is not None:
        last = mgr.latest_step()
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
        import orbax.checkpoint as ocp

        try:
            r = mgr.restore(last, args=ocp.args.Composite(
                model=ocp.args.StandardRestore({"params": abstract.params, "batch_stats": abstract.batch_stats}),
                train=ocp.args.StandardRestore({"opt_state": abstract.opt_state, "step": abstract.step,
                                                "rng": abstract.rng, "nonfinite": abstract.nonfinite,
                                                "skipped": abstract.skipped}),
                meta=ocp.args.JsonRestore()))
        except Exception as e:
            raise TrainingError(f"cannot resume from {workdir / checkpoints.CKPT_DIR / str(last)}: {e} "
                                f"(a checkpoint of a different model or config? use another workdir)") from e
        if r.meta.get("model") != meta_base["model"]:
            raise TrainingError(f"workdir {workdir} holds checkpoints of model {r.meta.get('model')}, "
                                f"not {meta_base['model']}: use another workdir")
        state = TrainState(params=r.model["params"], batch_stats=r.model["batch_stats"], **r.train)
        sched = r.meta.get("schedule", sched)
        _print0(f"jaxse.train: resumed from step {int(state.step)} ({workdir / checkpoints.CKPT_DIR})")
    start = int(state.step)

    def save(step: int, metrics: dict | None = None):
        meta = dict(meta_base, schedule=sched, data_position=step, lr=optim.get_learning_rate(state.opt_state))
        checkpoints.save(mgr, step, model={"params": state.params, "batch_stats": state.batch_stats},
                         train={"opt_state": state.opt_state, "step": state.step, "rng": state.rng,
                                "nonfinite": state.nonfinite, "skipped": state.skipped},
                         meta=meta, metrics=metrics, force=True)

    # ---------------------------------------------------------------- steps, input, signals
    train_step = make_train_step(model, tx, loss_fn, mesh)
    eval_step = make_eval_step(eval_model, mesh)
    log = MetricLog(workdir, pi == 0)
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    old = {s: signal_lib.signal(s, on_signal) for s in (signal_lib.SIGTERM, signal_lib.SIGINT)}
    max_steps = tcfg["max_steps"]
    stream: Iterator[dict] = batches(data_cfg, split="train", seed=cfg["seed"], process_index=pi,
                                     process_count=pc, start_step=start) if start < max_steps else iter(())
    bar = None
    if pi == 0 and tcfg["progress"] and start < max_steps:
        from tqdm import tqdm

        bar = tqdm(total=max_steps, initial=start, desc=cfg["name"], unit="step", dynamic_ncols=True)
    summary: dict[str, Any] = {"workdir": str(workdir), "params": n_params, "start_step": start}
    # PESQ/STOI of each validation run in a worker process; logged when done, so the devices never wait for them.
    host_pool = None
    if pi == 0 and tcfg["report_workers"] > 0:
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
                    log.write(at, "valid", fut.result())
                except Exception as e:  # a metric worker failure must not stop training
                    _print0(f"jaxse.train: validation metrics of step {at} failed: {e}")
    t_wait = t_step = 0.0
    t_compile = None
    last_metrics: dict = {}
    val = None
    try:
        step = start
        while step < max_steps:
            t0 = time.perf_counter()
            local = next(stream)
            t1 = time.perf_counter()
            state, metrics = train_step(state, global_batch(local, mesh))
            metrics = jax.device_get(metrics)
            t2 = time.perf_counter()
            step += 1
            if t_compile is None:
                t_compile = t2 - t1
            else:
                t_wait += t1 - t0
                t_step += t2 - t1
            if int(state.nonfinite) >= tcfg["max_nonfinite"]:
                raise TrainingError(f"{int(state.nonfinite)} consecutive non-finite losses/gradients at step "
                                    f"{step} (updates skipped); lower optim.lr or check the data")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(metrics['loss']):.3f}", si_snr=f"{float(metrics['si_snr']):.2f}")
            if step % tcfg["log_every"] == 0 or step == max_steps:
                last_metrics = {k: float(v) for k, v in metrics.items()}
                last_metrics["lr"] = optim.get_learning_rate(state.opt_state)
                last_metrics["skipped_total"] = int(state.skipped)
                log.write(step, "train", last_metrics)
            ckpt_metrics = None
            if step % tcfg["eval_every"] == 0 or step == max_steps:
                val = run_eval(eval_step, {"params": state.params, "batch_stats": state.batch_stats},
                               data_cfg, "valid", mesh, keep_audio=True)  # collective: every process
                if pi == 0:
                    log.examples(step, val)
                    if host_pool is not None:
                        from jaxse import evaluate

                        pending.append((step, host_pool.submit(evaluate.validation_metrics, val["clean"],
                                                               val["enhanced"], 16000)))
                ckpt_metrics = {checkpoints.BEST_METRIC: val["mean_si_snr"]}
                if val["mean_si_snr"] > sched["best"] + 1e-3:
                    sched = {"best": val["mean_si_snr"], "bad_evals": 0}
                else:
                    sched = {"best": sched["best"], "bad_evals": sched["bad_evals"] + 1}
                    if sched["bad_evals"] >= ocfg["plateau_patience"]:
                        lr = max(optim.get_learning_rate(state.opt_state) * ocfg["plateau_factor"], ocfg["min_lr"])
                        state = state.replace(opt_state=replicate(
                            optim.set_learning_rate(state.opt_state, lr), replicated))
                        sched = {"best": sched["best"], "bad_evals": 0}
                        _print0(f"jaxse.train: validation plateau, learning rate -> {lr:g}")
                log.write(step, "valid", {"si_snr": val["mean_si_snr"], "si_snr_noisy": val["mean_si_snr_noisy"],
                                          "si_snr_improvement": val["mean_si_snr"] - val["mean_si_snr_noisy"]})
                if bar is None:
                    _print0(f"step {step}: train loss {float(metrics['loss']):.3f}, valid SI-SNR "
                            f"{val['mean_si_snr']:.2f} dB (noisy {val['mean_si_snr_noisy']:.2f} dB)")
            if ckpt_metrics is not None or step % tcfg["ckpt_every"] == 0 or step == max_steps:
                save(step, ckpt_metrics)
            collect()
            if stop_requested(stop):
                save(step, ckpt_metrics)
                mgr.wait_until_finished()
                _print0(f"jaxse.train: stopped by signal {stop['signal']} at step {step}; checkpoint saved, "
                        f"run the same command to resume")
                summary.update(stopped_at=step, signal=stop["signal"])
                return summary
    finally:
        collect(wait=True)
        if host_pool is not None:
            host_pool.shutdown()
        if bar is not None:
            bar.close()
        for s, h in old.items():
            signal_lib.signal(s, h)
        mgr.wait_until_finished()
        log.close()

    n_timed = max_steps - start - 1
    if n_timed > 0:
        summary.update(step_seconds=t_step / n_timed, input_wait_seconds=t_wait / n_timed,
                       compile_seconds=t_compile)
        _print0(f"jaxse.train: {t_step / n_timed:.3f} s/step after compile ({t_compile:.1f} s incl. compile), "
                f"input wait {t_wait / n_timed * 1000:.1f} ms/step")
    summary.update(steps=max_steps, skipped=int(state.skipped), train=last_metrics,
                   valid_si_snr=None if val is None else val["mean_si_snr"])
    if tcfg["final_report"]:
        summary["test"] = final_report(cfg, workdir, mesh)
    mgr.close()
    return summary


def final_report(cfg: dict, workdir: Path, mesh: Mesh) -> dict:
    """Enhance the test split with the best checkpoint; PESQ-WB, STOI and SI-SNR next to the noisy input."""
    model, variables, meta = checkpoints.load_model(workdir)
    eval_step = make_eval_step(model, mesh)
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    res = run_eval(eval_step, variables, cfg["data"], "test", mesh, keep_audio=True)
    if jax.process_index() != 0:
        return {}
    from jaxse import evaluate

    items = [(f"test_{i:03d}", c, n, e) for i, (c, n, e) in enumerate(zip(res["clean"], res["noisy"], res["enhanced"]))]
    rows = evaluate.score_pairs(items, sample_rate=16000, workers=cfg["trainer"]["report_workers"])
    summary = evaluate.summarize(rows)
    table = evaluate.format_table(summary)
    print(f"\nTest split ({len(items)} mixtures), checkpoint step {meta['step']}:\n{table}", flush=True)
    evaluate.write_csv(rows, workdir / "test_metrics.csv")
    evaluate.write_json(summary, workdir / "test_summary.json")
    return summary
