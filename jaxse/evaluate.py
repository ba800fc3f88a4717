"""Evaluation of an enhancement model: per-file metrics of noisy and enhanced speech, summary, plots.

``key=value`` arguments::

    python -m jaxse.evaluate checkpoint=WORKDIR [data=demo|paired] [data.KEY=VALUE ...] [out=DIR]
                             [workers=N] [plots=true] [limit=N] [step=N] [max_plots=N] [dnsmos=true]
    python -m jaxse.evaluate checkpoint=WORKDIR input=NOISY_FILE_OR_DIR [out=DIR]   # no clean reference: DNSMOS

``data=NAME`` loads ``experiments/data/NAME.yaml``; ``data.KEY=VALUE`` overrides one of its keys.
Mixing kinds (``demo``, ``mix``, ``tfds``) are scored on the fixed test mixtures of the pipeline
(``eval_examples`` of them, ``segment_seconds`` long); ``paired`` on the full-length files of
``data.noisy_dir``/``data.clean_dir`` (default ``test_noisy_dir``/``test_clean_dir``).
Writes ``OUT/metrics.csv`` (one row per file), ``OUT/summary.json``, prints the summary table and,
with ``plots=true``, ``OUT/plots/<file>.png`` (spectrograms of the first ``max_plots`` files) and
``OUT/plots/improvement.png``.

The scoring itself (``score_pairs``, ``summarize``, ``format_table``, the writers and plots) is the library module
:mod:`jaxse.scoring`; this command parses the keys, enhances the items and calls it.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from jaxse import cli, scoring
from jaxse.errors import UsageError
# Re-exported for outside callers of the former library part of this command; the package and new code import
# jaxse.scoring (tests/test_imports.py: the library imports no command).
from jaxse.scoring import (format_table, score_pairs, summarize, validation_metrics, write_csv,  # noqa: F401
                           write_json)

__all__ = ["KEYS", "run", "main"]

KEYS = (
    cli.CHECKPOINT_KEY,
    cli.STEP_KEY,
    cli.Key("data", str, "demo", help="experiments/data/NAME.yaml; data.KEY=VALUE overrides its keys"),
    cli.Key("out", str, "evaluation", help="folder for metrics.csv, summary.json and plots/"),
    cli.Key("workers", int, None, min=0,
            help="metric worker processes (0: in this process; unset: one per core, at most 4)"),
    cli.Key("plots", bool, False, help="write spectrograms of the first max_plots files and improvement.png"),
    cli.Key("limit", int, None, min=1, help="score only the first N items"),
    cli.Key("max_plots", int, 16, min=0, help="files plotted with plots=true"),
    cli.Key("dnsmos", bool, False, help="also DNSMOS SIG/BAK/OVRL (no reference needed)"),
    cli.Key("input", str, None, help="noisy files alone (a file or folder): DNSMOS only, no clean reference"),
)
#: ``data.noisy_dir`` / ``data.clean_dir``: the files to score with ``data=paired`` (its test folders).
_PAIRED_ALIASES = {"noisy_dir": "test_noisy_dir", "clean_dir": "test_clean_dir"}


def _parse_args(argv: Sequence[str]):
    """``key=value`` arguments -> (options dict, typed data config)."""
    from jaxse import config

    opts = cli.parse(argv, KEYS, passthrough=("data.",))
    over = []
    for a in opts.pop("_rest"):
        k, v = a[len("data."):].split("=", 1)
        over.append(f"{_PAIRED_ALIASES.get(k, k) if opts['data'] == 'paired' else k}={v}")
    if opts["data"] == "paired":
        given = {o.split("=", 1)[0] for o in over}
        for split in ("noisy", "clean"):
            if f"test_{split}_dir" not in given:
                raise UsageError(f"data=paired needs data.{split}_dir=DIR (or data.test_{split}_dir)")
            if f"train_{split}_dir" not in given:  # only the test folders are scored
                over.append(f"train_{split}_dir=${{.test_{split}_dir}}")
    return opts, config.compose_data(opts["data"], over)


def _items_for(data_cfg, sample_rate: int, limit: int | None):
    if data_cfg.kind == "paired":
        return scoring.paired_items(data_cfg.test_noisy_dir, data_cfg.test_clean_dir, sample_rate=sample_rate,
                                    limit=limit)
    return scoring.demo_test_items(data_cfg, limit=limit)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "__", name).strip("_") or "file"


def run(opts: Mapping[str, Any], data_cfg, *, stream=None) -> dict[str, Any]:
    """Enhance the test items with the checkpoint, score, write the outputs; returns the summary.

    ``stream``: where the table is printed (default ``sys.stdout`` at call time).
    """
    stream = sys.stdout if stream is None else stream
    from jaxse.inference import Enhancer  # lazy: pulls in JAX

    limit = None if opts.get("limit") is None else int(opts["limit"])
    if opts.get("input"):  # noisy recordings without clean references: no-reference measures only
        items = scoring.noisy_items(opts["input"], sample_rate=data_cfg.sample_rate, limit=limit)
    else:
        items = _items_for(data_cfg, data_cfg.sample_rate, limit)  # bad data is found before the model is loaded
    if not items:
        raise UsageError("no test items to evaluate")
    enhancer = Enhancer.from_checkpoint(str(opts["checkpoint"]), step=opts.get("step"))
    sr = int(enhancer.sample_rate)
    if sr != data_cfg.sample_rate:
        raise UsageError(f"the checkpoint's model works at {sr} Hz, the data at {data_cfg.sample_rate} Hz")
    enhanced: list[np.ndarray] = []
    chunk = 16
    for i in range(0, len(items), chunk):
        enhanced.extend(enhancer.enhance([noisy for _, _, noisy in items[i : i + chunk]]))
    scored = [(name, clean, noisy, np.asarray(e, np.float32)[: noisy.shape[0]])
              for (name, clean, noisy), e in zip(items, enhanced)]
    workers = opts.get("workers")
    rows = scoring.score_pairs(scored, sample_rate=sr, workers=None if workers is None else int(workers),
                               with_dnsmos=bool(opts.get("dnsmos")))
    summary = scoring.summarize(rows)
    summary["checkpoint"] = str(opts["checkpoint"])
    summary["data"] = str(opts["input"] or opts["data"])
    summary["sample_rate"] = sr
    out = Path(str(opts["out"]))
    scoring.write_csv(rows, out / "metrics.csv")
    scoring.write_json(summary, out / "summary.json")
    if bool(opts.get("plots")) and not opts.get("input"):
        for name, clean, noisy, enh in scored[: int(opts.get("max_plots") or 0)]:
            scoring.plot_file(out / "plots" / f"{_safe_name(name)}.png", clean, noisy, enh, sr, title=name)
        scoring.plot_improvement(out / "plots" / "improvement.png", rows)
    print(scoring.format_table(summary), file=stream)
    print(f"wrote {out / 'metrics.csv'} and {out / 'summary.json'}", file=stream)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (``jaxse.cli``)."""
    def body(args: list[str]) -> int:
        opts, data_cfg = _parse_args(args)
        from jaxse.io.atomic import check_writable_dir

        check_writable_dir(opts["out"])
        run(opts, data_cfg)
        return cli.EXIT_OK

    return cli.run("jaxse.evaluate", body, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())

