"""Validation during training: the SI-SNR pass over an eval split on the devices (``run_eval``), and PESQ/STOI of
each validation scored in a worker process (``BackgroundScores``), so the devices never wait for them."""
from __future__ import annotations

from contextlib import closing

import jax
import numpy as np
from jax.sharding import Mesh

from jaxse.train.distributed import global_batch, to_host


def run_eval(eval_step, variables, data_cfg, split: str, mesh: Mesh, *, keep_audio: bool = False) -> dict:
    """Validation/test pass over a whole eval split (a collective: every process calls it). Returns mean SI-SNR of
    noisy and enhanced (and, with ``keep_audio``, the host arrays ``noisy``, ``clean``, ``enhanced``:
    ``float32[examples, samples]``)."""
    from jaxse.data.pipeline import batches

    n_local = jax.local_device_count()
    out = {k: [] for k in ("noisy", "clean", "enhanced", "si_snr", "si_snr_noisy")}
    with closing(batches(data_cfg, split=split, seed=0, process_index=jax.process_index(),
                         process_count=jax.process_count())) as stream:
        for b in stream:
            rows = b["noisy"].shape[0]
            pad = (-rows) % n_local  # every device gets the same number of rows
            g = global_batch({k: np.pad(b[k], [(0, pad), (0, 0)]) for k in ("noisy", "clean")}, mesh)
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


class BackgroundScores:
    """PESQ/STOI of validation audio (``jaxse.scoring.validation_metrics``) in one spawned worker process; each
    result is written to ``log`` as a ``valid_quality`` row when ready. With ``enabled=False`` nothing happens."""

    def __init__(self, log, *, enabled: bool, sample_rate: int, report=print):
        self.log, self.sample_rate, self.report = log, sample_rate, report
        self.pending: list = []
        self.pool = None
        if enabled:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, step: int, clean: np.ndarray, enhanced: np.ndarray) -> None:
        if self.pool is not None:
            from jaxse.scoring import validation_metrics

            self.pending.append((step, self.pool.submit(validation_metrics, clean, enhanced, self.sample_rate)))

    def collect(self, wait: bool = False) -> None:
        """Log the results that are ready (all of them with ``wait``)."""
        for item in list(self.pending):
            step, future = item
            if wait or future.done():
                self.pending.remove(item)
                try:
                    self.log.write(step, "valid_quality", future.result())
                except Exception as e:  # noqa: BLE001 - a metric worker failure must not stop training
                    self.report(f"jaxse.train: validation metrics of step {step} failed: {e}")

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
