"""Scoring of enhanced speech: per-file metrics of noisy and enhanced signals, summary, table, CSV/JSON, plots,
the test items of a data config, and the validation metrics of the trainer.

    rows = score_pairs([(name, clean, noisy, enhanced), ...])   # float [samples] arrays, 16 kHz
    summary = summarize(rows)
    print(format_table(summary))
    write_csv(rows, "out/metrics.csv")

The library behind ``python -m jaxse.evaluate`` (the command) and the trainer's validation and final report. This
module imports neither JAX nor TensorFlow at import time (worker processes stay light).
"""
from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from jaxse.errors import UsageError
from jaxse.io.atomic import write_bytes
from jaxse.io.display import log_spectrogram
from jaxse.io.jsonable import jsonable
from jaxse.metrics import DNSMOS, METRICS, compute_all

__all__ = [
    "LABELS",
    "metric_names",
    "columns",
    "score_pairs",
    "summarize",
    "format_table",
    "write_csv",
    "write_json",
    "plot_file",
    "plot_improvement",
    "demo_test_items",
    "noisy_items",
    "paired_items",
    "validation_metrics",
]


#: Display names of the metrics (rows of the summary table), in order.
LABELS = {
    "pesq_wb": "PESQ-WB",
    "pesq_nb": "PESQ-NB",
    "stoi": "STOI",
    "estoi": "ESTOI",
    "si_snr": "SI-SNR (dB)",
    "snr": "SNR (dB)",
    "csig": "CSIG",
    "cbak": "CBAK",
    "covl": "COVL",
    "dnsmos_sig": "DNSMOS SIG",
    "dnsmos_bak": "DNSMOS BAK",
    "dnsmos_ovrl": "DNSMOS OVRL",
    "dnsmos_p808": "DNSMOS P.808",
}

#: Numeric columns of a row besides ``noisy_<metric>`` / ``enhanced_<metric>``.
EXTRA_COLUMNS = ("si_snr_improvement", "input_snr")


def metric_names(*, reference: bool = True, with_dnsmos: bool = False) -> tuple[str, ...]:
    """The metrics of a run: the reference metrics (when clean references exist) and/or DNSMOS."""
    return (METRICS if reference else ()) + (DNSMOS if with_dnsmos or not reference else ())


def columns(metrics: Sequence[str] = METRICS) -> list[str]:
    """CSV column order: ``name``, ``noisy_*``, ``enhanced_*``, the extra columns, ``errors``."""
    extra = list(EXTRA_COLUMNS) if "si_snr" in metrics else []
    return (["name"] + [f"noisy_{m}" for m in metrics] + [f"enhanced_{m}" for m in metrics] + extra + ["errors"])


def _metrics_of(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    keys = set(rows[0]) if rows else {f"noisy_{m}" for m in METRICS}
    return tuple(m for m in METRICS + DNSMOS if f"noisy_{m}" in keys)


# ------------------------------------------------------------------------------------ scoring
def _score_one(clean: np.ndarray | None, est: np.ndarray, sample_rate: int, with_dnsmos: bool = False
               ) -> dict[str, Any]:
    """Worker task (top-level so that spawned processes can unpickle it)."""
    return compute_all(clean, est, sample_rate, with_dnsmos=with_dnsmos)


def _row(name: str, noisy: Mapping[str, Any], enhanced: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": str(name)}
    for m in METRICS + DNSMOS:
        if m in noisy:
            row[f"noisy_{m}"] = float(noisy[m])
            row[f"enhanced_{m}"] = float(enhanced[m])
    if "si_snr" in noisy:
        row["si_snr_improvement"] = row["enhanced_si_snr"] - row["noisy_si_snr"]  # NaN if either is
        row["input_snr"] = row["noisy_snr"]
    errs = [f"{which} {m}: {reason}" for which, res in (("noisy", noisy), ("enhanced", enhanced))
            for m, reason in res["errors"].items()]
    row["errors"] = "; ".join(errs)
    return row


def score_signals(pairs: Sequence[tuple[np.ndarray | None, np.ndarray]], *, sample_rate: int = 16000,
                  workers: int | None = None, with_dnsmos: bool = False) -> list[dict[str, Any]]:
    """``jaxse.metrics.compute_all`` of every ``(clean, signal)`` pair (float ``[samples]`` arrays at ``sample_rate``
    Hz; ``clean=None``: DNSMOS only), in input order, over ``workers`` processes (see :func:`score_pairs`)."""
    pairs = list(pairs)
    if workers is None:
        workers = min(os.cpu_count() or 1, 4)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0 or len(pairs) <= 1:
        return [_score_one(c, x, sample_rate, with_dnsmos) for c, x in pairs]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(pairs)), mp_context=ctx) as ex:
        futures = [ex.submit(_score_one, None if c is None else np.asarray(c), np.asarray(x), sample_rate,
                             with_dnsmos) for c, x in pairs]
        return [f.result() for f in futures]


def score_pairs(items: Sequence[tuple[str, np.ndarray | None, np.ndarray, np.ndarray]], *, sample_rate: int = 16000,
                workers: int | None = None, with_dnsmos: bool = False) -> list[dict[str, Any]]:
    """Metrics of the noisy and the enhanced signal of every item, one row per item (input order).

    Args:
      items: ``(name, clean, noisy, enhanced)`` with float ``[samples]`` arrays of equal length at
        ``sample_rate`` Hz; ``clean=None``: no reference, only the DNSMOS measures.
      with_dnsmos: also the no-reference DNSMOS measures (``jaxse.metrics.DNSMOS``) of noisy and enhanced.
      workers: worker processes (``ProcessPoolExecutor``, spawn context); default
        ``min(os.cpu_count(), 4)``; ``0`` computes in this process.
    Returns:
      dicts with ``name``, ``noisy_<metric>``/``enhanced_<metric>`` for every metric of
      :data:`jaxse.metrics.METRICS`, ``si_snr_improvement`` (dB, enhanced minus noisy SI-SNR),
      ``input_snr`` (dB, SNR of the noisy signal) and ``errors`` (``""`` or
      ``"<noisy|enhanced> <metric>: <reason>; ..."``). Failed metrics are NaN.
    """
    items = list(items)
    results = score_signals([(clean, x) for _, clean, noisy, enhanced in items for x in (noisy, enhanced)],
                            sample_rate=sample_rate, workers=workers, with_dnsmos=with_dnsmos)
    return [_row(it[0], results[2 * i], results[2 * i + 1]) for i, it in enumerate(items)]


# ------------------------------------------------------------------------------------ summary
def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over files of every numeric column, NaNs left out and counted.

    Returns ``{"n_files": N, "mean": {column: mean or NaN}, "left_out": {column: count},
    "delta": {metric: mean of enhanced - noisy over files where both are finite},
    "failed": [{"name": ..., "errors": ...}, ...]}`` where the columns are ``noisy_<metric>``,
    ``enhanced_<metric>``, ``si_snr_improvement`` and ``input_snr``.
    """
    metrics = _metrics_of(rows)
    cols = [c for c in columns(metrics) if c not in ("name", "errors")]
    mean: dict[str, float] = {}
    left_out: dict[str, int] = {}
    for c in cols:
        vals = [float(r[c]) for r in rows if _finite(r.get(c))]
        mean[c] = float(np.mean(vals)) if vals else float("nan")
        left_out[c] = len(rows) - len(vals)
    delta: dict[str, float] = {}
    for m in metrics:
        d = [float(r[f"enhanced_{m}"]) - float(r[f"noisy_{m}"]) for r in rows
             if _finite(r.get(f"enhanced_{m}")) and _finite(r.get(f"noisy_{m}"))]
        delta[m] = float(np.mean(d)) if d else float("nan")
    failed = [{"name": str(r["name"]), "errors": str(r["errors"])} for r in rows if r.get("errors")]
    return {"n_files": len(rows), "metrics": list(metrics), "mean": mean, "left_out": left_out, "delta": delta,
            "failed": failed}


def _fmt(v: float, width: int) -> str:
    return f"{v:>{width}.3f}" if _finite(v) else f"{'n/a':>{width}}"


def format_table(summary: Mapping[str, Any], *, max_failed: int = 20) -> str:
    """Plain-text table: rows = metrics, columns noisy / enhanced / delta (+ files left out).

    The delta column is the mean per-file difference (enhanced - noisy) over the files where both
    are finite. Ends with the files whose metrics failed (name and reason), if any.
    """
    mean, left, delta = summary["mean"], summary["left_out"], summary["delta"]
    w0, w = 20, 10
    lines = [f"{summary['n_files']} file(s)",
             f"{'metric':<{w0}}{'noisy':>{w}}{'enhanced':>{w}}{'delta':>{w}}  left out (noisy/enhanced)"]
    lines.append("-" * len(lines[-1]))
    for m in summary.get("metrics", METRICS):
        lo = f"{left[f'noisy_{m}']}/{left[f'enhanced_{m}']}"
        lines.append(f"{LABELS[m]:<{w0}}{_fmt(mean[f'noisy_{m}'], w)}{_fmt(mean[f'enhanced_{m}'], w)}"
                     f"{_fmt(delta[m], w)}  {lo}")
    if "si_snr_improvement" in mean:
        lines.append(f"{'SI-SNR improvement':<{w0}}{'':>{w}}{'':>{w}}{_fmt(mean['si_snr_improvement'], w)}"
                     f"  {left['si_snr_improvement']}")
    failed = summary.get("failed") or []
    if failed:
        lines.append(f"metrics failed for {len(failed)} file(s):")
        for f in failed[:max_failed]:
            lines.append(f"  {f['name']}: {f['errors']}")
        if len(failed) > max_failed:
            lines.append(f"  ... ({len(failed) - max_failed} more, see metrics.csv)")
    else:
        lines.append("metrics failed for 0 files")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ writing
def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Write ``rows`` (from :func:`score_pairs`) as CSV, atomically; NaN is written as ``nan``."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns(_metrics_of(rows)), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()})
    write_bytes(path, buf.getvalue().encode("utf-8"))


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as JSON atomically; non-finite floats become ``null``."""
    write_bytes(path, (json.dumps(jsonable(obj), indent=2) + "\n").encode("utf-8"))


# ------------------------------------------------------------------------------------ plots
def _figure(nrows: int, ncols: int, figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # Agg canvas without touching pyplot's global backend
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save_png(fig, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes(path, buf.getvalue())


def plot_file(path_png: str | os.PathLike, clean: np.ndarray, noisy: np.ndarray, enhanced: np.ndarray,
              sr: int = 16000, *, title: str | None = None) -> None:
    """Three stacked log-magnitude spectrograms (clean, noisy, enhanced; ``[samples]`` at ``sr`` Hz),
    shared dB colour scale (80 dB range below the maximum), written to ``path_png``."""
    specs = [log_spectrogram(x) for x in (clean, noisy, enhanced)]
    vmax = max(float(s.max()) for s in specs)
    fig, axes = _figure(3, 1, (8, 7))
    for ax, s, label in zip(axes[:, 0], specs, ("clean", "noisy", "enhanced")):
        dur = (s.shape[1] * 128 + 384) / sr
        im = ax.imshow(s, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80.0, vmax=vmax,
                       extent=(0.0, dur, 0.0, sr / 2000.0))
        ax.set_ylabel(f"{label}\nfrequency (kHz)")
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        axes[0, 0].set_title(title)
    fig.colorbar(im, ax=list(axes[:, 0]), label="dB")
    _save_png(fig, path_png)


def plot_improvement(path_png: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Scatter of SI-SNR improvement (dB) and PESQ-WB delta against the input SNR (dB), one point per file."""
    fig, axes = _figure(1, 2, (10, 4))
    x = np.array([float(r["input_snr"]) for r in rows], dtype=np.float64)
    ys = (np.array([float(r["si_snr_improvement"]) for r in rows], dtype=np.float64),
          np.array([float(r["enhanced_pesq_wb"]) - float(r["noisy_pesq_wb"]) for r in rows], dtype=np.float64))
    for ax, y, label in zip(axes[0], ys, ("SI-SNR improvement (dB)", "PESQ-WB delta")):
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=14, alpha=0.8)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("input SNR (dB)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} ({int(ok.sum())} files)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_png(fig, path_png)


# ------------------------------------------------------------------------------------ data
def demo_test_items(data_cfg: Mapping, *, limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The fixed test mixtures of a mixing data config (``demo``/``mix``/``tfds``) as
    ``(name, clean, noisy)`` with float32 ``[samples]`` arrays at ``data_cfg.sample_rate``.

    Names are ``test_0000``, ``test_0001``, ... in pipeline order; ``limit`` keeps the first N.
    """
    from jaxse.data.pipeline import batches

    out: list[tuple[str, np.ndarray, np.ndarray]] = []
    with closing(batches(data_cfg, split="test", seed=0, repeat=False)) as stream:
        for batch in stream:
            for clean, noisy in zip(batch["clean"], batch["noisy"]):
                if limit is not None and len(out) >= limit:
                    return out
                out.append((f"test_{len(out):04d}", np.asarray(clean, np.float32), np.asarray(noisy, np.float32)))
    return out


def noisy_items(path: str | os.PathLike, *, sample_rate: int = 16000, limit: int | None = None
                ) -> list[tuple[str, None, np.ndarray]]:
    """``(name, None, noisy)`` for an audio file or every audio file under a folder (no clean reference)."""
    from jaxse.io.audio import list_audio, read_audio

    p = Path(path)
    if not p.exists():
        raise UsageError(f"input {str(path)!r} does not exist")
    files = [str(p)] if p.is_file() else list_audio(p)
    if not files:
        raise UsageError(f"no audio files (.wav/.flac/.ogg) under {str(path)!r}")
    files = files[:limit] if limit is not None else files
    return [(os.path.relpath(f, p) if p.is_dir() else p.name, None, read_audio(f, sample_rate=sample_rate))
            for f in files]


def paired_items(noisy_dir: str | os.PathLike, clean_dir: str | os.PathLike, *, sample_rate: int = 16000,
                 limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Full-length ``(name, clean, noisy)`` pairs of a paired-folder layout (files matched by
    relative path, extension ignored), float32 ``[samples]`` at ``sample_rate`` (resampled,
    downmixed). A pair whose lengths differ is cut to the shorter one."""
    from jaxse.io.audio import match_pairs, read_audio

    pairs = match_pairs(noisy_dir, clean_dir)
    if limit is not None:
        pairs = pairs[:limit]
    out = []
    for key, noisy_path, clean_path in pairs:
        noisy = read_audio(noisy_path, sample_rate=sample_rate)
        clean = read_audio(clean_path, sample_rate=sample_rate)
        n = min(noisy.shape[0], clean.shape[0])
        out.append((key, clean[:n], noisy[:n]))
    return out


# ------------------------------------------------------------------------------------ validation during training
def validation_metrics(clean: np.ndarray, enhanced: np.ndarray, sample_rate: int = 16000) -> dict[str, float]:
    """Mean PESQ-WB, PESQ-NB and STOI of ``enhanced`` against ``clean`` (both ``float32[examples, samples]``).

    Run by the trainer in a worker process, so the accelerator never waits for it. Examples whose metric cannot be
    computed are left out of that mean (``<metric>_left_out`` counts them).
    """
    from jaxse import metrics

    out: dict[str, float] = {}
    for name, fn in (("pesq_wb", metrics.pesq_wb), ("pesq_nb", metrics.pesq_nb), ("stoi", metrics.stoi)):
        vals = []
        for c, e in zip(clean, enhanced):
            try:
                vals.append(float(fn(c, e, sample_rate)))
            except Exception:  # too short, silent: left out and counted
                vals.append(float("nan"))
        v = np.asarray(vals)
        out[name] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        out[f"{name}_left_out"] = float(np.sum(~np.isfinite(v)))
    return out
