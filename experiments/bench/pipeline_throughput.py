"""Input-pipeline benchmarks: memory against corpus size, batches/s against worker cores, start-up, resume.

Corpora come from ``experiments/bench/make_corpus.py`` (``speech/``, ``noise/``, ``rir/``, ``paired/``). Every
measurement runs in a fresh process (so ``ru_maxrss`` is that configuration's peak) pinned to ``--cores`` CPUs with
``data.workers`` set to match, and prints one JSON line; each command ends with a summary line.

    python -m experiments.bench.pipeline_throughput memory --corpus data/bench_1h --corpus data/bench_20h
    python -m experiments.bench.pipeline_throughput throughput --corpus data/bench_1h [--cores 1 2]
    python -m experiments.bench.pipeline_throughput startup --corpus data/bench_20h
    python -m experiments.bench.pipeline_throughput resume --corpus data/bench_1h [--step 100000]
    python -m experiments.bench.pipeline_throughput demo [--batches 50]      # the embedded demo corpus, 8 x 4 s

``memory``: peak RSS serving ``--batches`` batches of 8 x 4 s, ``mix`` with RIRs and ``paired``, per corpus, and the
largest/smallest ratio per kind (the claim: within 1.10). ``throughput``: batches/s of 8 x 4 s and 32 x 4 s, mix
without and with RIRs (and paired), on each core count. ``startup``: time to the first batch with an empty index
cache (index build) and again with the cache. ``resume``: time to the first batch at ``start_step=--step`` against
``start_step=0``, for paired, mix, demo and tfds (dns_challenge prepared once from the corpus into ``<corpus>/tfds``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cfg(kind: str, corpus: Path | None, *, batch: int, seconds: float, rir: bool, workers: int | None,
         cache: str | None) -> dict:
    cfg = dict(kind=kind, batch_size=batch, segment_seconds=seconds, workers=workers, index_cache_dir=cache,
               prefetch=2)
    if kind == "mix":
        cfg.update(clean_dirs=[str(corpus / "speech")], noise_dirs=[str(corpus / "noise")],
                   rir_dirs=[str(corpus / "rir")] if rir else [], rir_prob=1.0)
    elif kind == "paired":
        p = corpus / "paired"
        cfg.update(train_noisy_dir=str(p / "noisy"), train_clean_dir=str(p / "clean"),
                   test_noisy_dir=str(p / "noisy"), test_clean_dir=str(p / "clean"))
    elif kind == "demo":
        cfg.update(rir_dirs=[str(corpus / "rir")] if rir and corpus else [])
    elif kind == "tfds":
        manual = corpus / "tfds_manual"
        manual.mkdir(exist_ok=True)
        for d in ("clean", "noise"):
            if not (manual / d).exists():
                (manual / d).symlink_to((corpus / ("speech" if d == "clean" else d)).resolve())
        cfg.update(name="dns_challenge", data_dir=str(corpus / "tfds"), manual_dir=str(manual),
                   rir_dirs=[str(corpus / "rir")] if rir else [])
    return cfg


def _child(spec: dict) -> dict:
    """One measurement in this (fresh) process."""
    cores = spec.get("cores")
    if cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    import tensorflow as tf

    if cores:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(cores)
    from jaxse.data.pipeline import build_dataset

    corpus = Path(spec["corpus"]) if spec.get("corpus") else None
    cfg = _cfg(spec["kind"], corpus, batch=spec["batch"], seconds=spec["seconds"], rir=spec["rir"],
               workers=cores, cache=spec.get("cache"))
    if spec["kind"] == "tfds":  # preparing is not start-up: done once, before the clock
        from jaxse.data import tfds_builders

        tfds_builders.get_builder(cfg)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    it = build_dataset(cfg, split="train", seed=0, start_step=spec.get("start_step", 0)).as_numpy_iterator()
    b = next(it)
    first = time.perf_counter() - t0
    for _ in range(spec.get("warmup", 0)):
        next(it)
    t1 = time.perf_counter()
    for _ in range(spec.get("batches", 0)):
        b = next(it)
    dt = time.perf_counter() - t1
    res = dict(spec, first_batch_s=round(first, 3),
               batches_per_s=round(spec["batches"] / dt, 2) if spec.get("batches") else None,
               shape=list(b["noisy"].shape), rss_after_import_mb=round(rss0, 1),
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               cpu_count=os.cpu_count())
    return res


def _run(spec: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "experiments.bench.pipeline_throughput", "child", json.dumps(spec)],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"measurement failed: {spec}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(res), flush=True)
    return res


def _base(args, **kw) -> dict:
    d = dict(batch=8, seconds=4.0, rir=False, cores=None, batches=0, warmup=0, start_step=0)
    d.update(kw)
    return d


def cmd_memory(args) -> dict:
    cache = tempfile.mkdtemp(prefix="jaxse-bench-index-")
    peaks: dict[str, list[float]] = {}
    for kind, rir in (("mix", True), ("paired", False)):
        for c in args.corpus:
            r = _run(_base(args, kind=kind, corpus=str(c), rir=rir, batches=args.batches, warmup=5, cache=cache))
            peaks.setdefault(f"{kind}{'+rir' if rir else ''}", []).append(r["peak_rss_mb"])
    return {"summary": "memory", "peak_rss_mb": peaks,
            "max_over_min": {k: round(max(v) / min(v), 3) for k, v in peaks.items()}}


def cmd_throughput(args) -> dict:
    cache = tempfile.mkdtemp(prefix="jaxse-bench-index-")
    _run(_base(args, kind="mix", corpus=str(args.corpus[0]), rir=True, cache=cache))  # index once, off the clock
    _run(_base(args, kind="paired", corpus=str(args.corpus[0]), cache=cache))
    table = {}
    for cores in args.cores:
        for batch in (8, 32):
            for kind, rir in (("mix", False), ("mix", True), ("paired", False)):
                r = _run(_base(args, kind=kind, corpus=str(args.corpus[0]), rir=rir, batch=batch, cores=cores,
                               batches=args.batches, warmup=args.warmup, cache=cache))
                table[f"{kind}{'+rir' if rir else ''} {batch}x4s {cores} core(s)"] = r["batches_per_s"]
    return {"summary": "throughput (batches/s)", **table}


def cmd_startup(args) -> dict:
    cache = tempfile.mkdtemp(prefix="jaxse-bench-index-")
    out = {}
    for kind, rir in (("mix", True), ("paired", False)):
        for run in ("first (index build)", "second (cached)"):
            r = _run(_base(args, kind=kind, corpus=str(args.corpus[0]), rir=rir, cache=cache))
            out[f"{kind} {run}"] = r["first_batch_s"]
    return {"summary": "start-up, s to the first batch", **out}


def cmd_resume(args) -> dict:
    cache = tempfile.mkdtemp(prefix="jaxse-bench-index-")
    out = {}
    for kind, rir in (("paired", False), ("mix", True), ("demo", False), ("tfds", True)):
        for step in (0, args.step):
            r = _run(_base(args, kind=kind, corpus=str(args.corpus[0]), rir=rir, start_step=step, cache=cache))
            out[f"{kind} start_step={step}"] = r["first_batch_s"]
    return {"summary": "resume, s to the first batch (index cached)", **out}


def cmd_demo(args) -> dict:
    r = _run(_base(args, kind="demo", corpus=None, batches=args.batches, warmup=args.warmup,
                   cache=tempfile.mkdtemp(prefix="jaxse-bench-index-")))
    return {"summary": "demo 8x4s", "batches_per_s": r["batches_per_s"]}


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        res = _child(json.loads(argv[1]))
        print(json.dumps(res))
        return res
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["memory", "throughput", "startup", "resume", "demo"], nargs="?", default="demo")
    ap.add_argument("--corpus", type=Path, action="append", default=[])
    ap.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--step", type=int, default=100_000)
    args = ap.parse_args(argv)
    if args.what != "demo" and not args.corpus:
        ap.error(f"{args.what} needs --corpus (a folder written by experiments.bench.make_corpus)")
    res = {"memory": cmd_memory, "throughput": cmd_throughput, "startup": cmd_startup, "resume": cmd_resume,
           "demo": cmd_demo}[args.what](args)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
