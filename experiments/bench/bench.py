"""Side-by-side benchmark of jaxse against the PyTorch reference (asteroid DCCRNet "DCCRN-CL") on one machine.

    python experiments/bench/bench.py [--peer-python PATH] [--quick] [--lock FILE] [--only ROW,...]

Every measurement runs in its own subprocess (so that its peak resident memory is its own: the parent reads the
child's ``ru_maxrss`` from ``os.wait4``). Measurements:

* training step, global batch 8 x 4 s at 16 kHz, forward + loss + backward + Adam(lr 1e-3):
  median seconds/step over N steps after 2 warm-ups, compile time separately; jaxse DCCRN-CL (negative SI-SNR) and
  CRN (its magnitude MSE), the peer (negative SI-SDR); each with default glibc malloc and with malloc tuned
  (``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=64G MALLOC_TOP_PAD_=1G``);
* offline inference, batch 1, 4 s: median seconds and real-time factor (seconds / 4);
* streaming, one hop at a time, one CPU thread (``taskset -c 0`` and XLA's single-thread flags): per-hop latency
  median and p99 against the model's hop (DCCRN-CL 6.25 ms, CRN 10 ms), for DCCRN-CL with the paper's and the
  causal decoder and for CRN, with float32 weights, bfloat16 products (``compute_dtype``) and bfloat16 / int8
  stored weights (``Streamer(precision=...)``); then N streams in one batched hop (``MultiStreamer``, N = 1, 2,
  4, ... up to ``--max-streams``, stopping at the first N whose p99 passes the hop): the largest N whose batched
  hop's p99 stays below the hop. ``--stream-tiny`` swaps in the tiny models (a smoke run of the code, no figures).
  The peer has no streaming mode;
* training rows twice: a plain ``jax.jit(jax.value_and_grad(...))`` over ``get_model(name)`` with the model's
  defaults (``conv_lowering="auto"``), and ``jaxse.train``'s own step (shard_map, finiteness guard, metrics);
* on an accelerator (``jax.devices()[0].platform != "cpu"``): DCCRN-CL training at batch 8 and 64 (step time,
  audio-hours per hour, FLOP/s by XLA's count and the nominal 3 x 17 GFLOP per second of audio, MFU against the
  chip's peak), in float32 and with ``compute_dtype="bfloat16"``.

Prints a table (measure | jaxse | peer | ratio | goal | met?) and, last, one JSON line with every figure.

The peer's interpreter: ``--peer-python`` (default: environment variable ``JAXSE_PEER_PYTHON``); install the peer
with ``experiments/bench/install_peer.sh VENV`` and pass ``VENV/bin/python``. Without it the peer rows say "not run".
``--lock FILE``: hold an exclusive ``flock`` on FILE during each measurement (default: ``JAXSE_BENCH_LOCK``), so
that benchmarks by different people on one shared machine never overlap.

Internal: ``bench.py --worker {train,infer,stream,accel} --model NAME [...]`` runs one measurement in this process
and prints one JSON line.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SR = 16000
SECONDS = 4.0
TRAIN_BATCH = 8
GFLOP_PER_AUDIO_S = 17.0  # forward pass, from the peer's own FLOP count (asteroid DCCRNet, 2026-11-23)
MALLOC_TUNED = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "64G", "MALLOC_TOP_PAD_": "1G"}
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: Streaming rows: (key label, model, worker arguments) and the precision variants (key, worker arguments).
STREAM_MODELS = (("dccrn-cl", "dccrn-cl", ["--override", "decoder=paper"]),
                 ("dccrn-cl-causal", "dccrn-cl", ["--override", "decoder=causal"]),
                 ("crn", "crn", []))
STREAM_VARIANTS = {"default": [], "bf16": ["--override", "compute_dtype=bfloat16"],
                   "w-bf16": ["--precision", "bfloat16"], "w-int8": ["--precision", "int8"]}
STREAM_VARIANT_TAGS = {"default": ", float32", "bf16": ", bfloat16 products", "w-bf16": ", bfloat16 weights",
                       "w-int8": ", int8 weights"}


# ================================================================================================================
# Workers (one measurement per process)
# ================================================================================================================
def _vm_hwm_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _model(name: str, overrides: dict):
    from jaxse.models import get_model

    return get_model(name, **overrides)  # overrides include conv_lowering (--conv-lowering)


def _loss_for(name: str):
    from jaxse import losses

    return losses.magnitude_mse if name.startswith("crn") else losses.neg_si_snr


def _audio(batch: int, n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    clean = (0.1 * rng.standard_normal((batch, n))).astype(np.float32)
    noisy = (clean + 0.05 * rng.standard_normal((batch, n))).astype(np.float32)
    return noisy, clean


def make_train_step(model, loss_fn, tx):
    """Jitted ``step(params, batch_stats, opt_state, noisy, clean) -> (params, batch_stats, opt_state, loss)`` with
    the state donated."""
    import jax
    import optax

    def objective(params, batch_stats, noisy, clean):
        out, upd = model.apply({"params": params, "batch_stats": batch_stats}, noisy, train=True,
                               mutable=["batch_stats"])
        return loss_fn(out, clean).mean(), upd["batch_stats"]

    def step(params, batch_stats, opt_state, noisy, clean):
        (loss, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(params, batch_stats, noisy, clean)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1, 2))


def _flops_of(compiled) -> float | None:
    try:
        ca = compiled.cost_analysis()
        if isinstance(ca, (list, tuple)):
            ca = ca[0]
        return float(ca["flops"])
    except Exception:  # pragma: no cover - backend without cost analysis
        return None


def _trainer_step(args, noisy, clean):
    """``jaxse.train``'s own step (shard_map over a mesh of every device, finiteness guard, metrics): returns
    ``(compiled, state, batch, advance)`` where ``advance(state) -> (state, loss)`` runs one step."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    from jaxse.optim import make_optimizer
    from jaxse.train import step as train_step
    from jaxse.train.distributed import AXIS, global_batch
    from jaxse.train.loop import release_freed_memory

    model = _model(args.model, {**args.overrides, "axis_name": AXIS})
    tx = make_optimizer(lr=1e-3, clip_norm=None)  # plain Adam, as the peer
    mesh = Mesh(np.asarray(jax.devices()), (AXIS,))
    state = train_step.create_state(model, tx, jax.random.PRNGKey(0), samples=noisy.shape[1])
    batch = global_batch({"noisy": np.asarray(noisy), "clean": np.asarray(clean)}, mesh)
    fn = train_step.make_train_step(model, tx, _loss_for(args.model), mesh)
    compiled = fn.lower(state, batch).compile()
    release_freed_memory()  # as jaxse.train does after compiling its step

    def advance(state):
        state, metrics = compiled(state, batch)
        return state, metrics["loss"]

    return compiled, state, advance


def _plain_step(args, noisy, clean):
    """A plain ``jax.jit(jax.value_and_grad(...))`` over ``get_model(name)`` with nothing set by hand (the model's
    defaults: ``conv_lowering="auto"``) and plain Adam, state donated; same return as ``_trainer_step``."""
    import jax

    from jaxse.optim import make_optimizer

    model = _model(args.model, args.overrides)
    variables = model.init(jax.random.PRNGKey(0), noisy[:1])
    tx = make_optimizer(lr=1e-3, clip_norm=None)  # plain Adam, as the peer
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
    fn = make_train_step(model, _loss_for(args.model), tx)
    compiled = fn.lower(*state, noisy, clean).compile()

    def advance(state):
        *state, loss = compiled(*state, noisy, clean)
        return tuple(state), loss

    return compiled, state, advance


def worker_train(args) -> dict:
    import jax.numpy as jnp

    n = int(SR * args.seconds)
    noisy, clean = _audio(args.batch, n)
    noisy, clean = jnp.asarray(noisy), jnp.asarray(clean)
    t0 = time.perf_counter()
    compiled, state, advance = (_trainer_step if args.step == "trainer" else _plain_step)(args, noisy, clean)
    compile_s = time.perf_counter() - t0
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        state, loss = advance(state)
        loss = float(loss)  # blocks
        dt = time.perf_counter() - t0
        losses.append(loss)
        if i >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    return {"median_s_per_step": med, "compile_s": compile_s, "all_s": [round(t, 4) for t in times],
            "first_loss": losses[0], "last_loss": losses[-1], "xla_flops_per_step": _flops_of(compiled),
            "audio_h_per_h": args.batch * args.seconds / med, "step": args.step}


def worker_infer(args) -> dict:
    import jax
    import jax.numpy as jnp

    model = _model(args.model, args.overrides)
    n = int(SR * args.seconds)
    noisy, _ = _audio(args.batch, n)
    noisy = jnp.asarray(noisy)
    variables = model.init(jax.random.PRNGKey(0), noisy[:1])
    fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
    t0 = time.perf_counter()
    compiled = fn.lower(variables, noisy).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        compiled(variables, noisy).block_until_ready()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    return {"median_s": med, "rtf": med / args.seconds, "compile_s": compile_s,
            "all_s": [round(t, 4) for t in times], "xla_flops": _flops_of(compiled)}


def worker_stream(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    try:
        from jaxse.inference import streamer as stream
        from jaxse.nn.quant import quantize_variables, stored_bytes
    except ImportError as e:
        return {"skipped": True, "reason": f"jaxse.stream not importable ({e})"}
    model = _model(args.model, args.overrides)
    hop = model.hop
    n = int(SR * args.seconds)
    noisy, _ = _audio(1, n)
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(noisy[:, : 4 * hop]))
    streamer = stream.Streamer(model, precision=args.precision)
    state = streamer.init_stream(variables, 1)
    hops = [jnp.asarray(noisy[:, i * hop:(i + 1) * hop]) for i in range(n // hop)]
    t0 = time.perf_counter()
    out, state = streamer.stream_step(variables, state, hops[0])
    jax.block_until_ready(out)
    first_s = time.perf_counter() - t0
    warm = min(20, len(hops) // 4)
    for h in hops[1:warm]:
        out, state = streamer.stream_step(variables, state, h)
        jax.block_until_ready(out)
    times = []
    for _ in range(args.repeats):
        for h in hops[warm:]:
            t0 = time.perf_counter()
            out, state = streamer.stream_step(variables, state, h)
            jax.block_until_ready(out)
            times.append(time.perf_counter() - t0)
    t = np.asarray(times) * 1e3
    hop_ms = 1e3 * hop / SR
    res = {"hop_ms": hop_ms, "median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)),
           "max_ms": float(t.max()), "hops_timed": len(times), "first_call_s": first_s,
           "p99_fraction_of_hop": float(np.percentile(t, 99)) / hop_ms, "precision": args.precision,
           "weight_bytes": stored_bytes(quantize_variables(variables, args.precision))}
    if args.max_streams:
        res.update(_batched_hops(streamer, variables, [np.asarray(h)[0] for h in hops], hop_ms, args))
    return res


def _batched_hops(streamer, variables, hops: list, hop_ms: float, args) -> dict:
    """N streams in one step (``MultiStreamer``) for N = 1, 2, 4, ... ``--max-streams``: per-N median and p99 of a
    batched hop (step call to results on the host, ``--batch-hops`` hops after warm-up), stopping at the first N
    whose p99 passes the hop; ``max_streams_within_hop``: the largest N whose p99 stays below it (0: none)."""
    import numpy as np

    from jaxse.inference.multistream import MultiStreamer

    per_n, best, n = {}, 0, 1
    while n <= args.max_streams:
        ms = MultiStreamer(streamer, variables)
        ids = [ms.join() for _ in range(n)]
        warm, times = 5, []
        for i in range(warm + args.batch_hops):
            batch = {sid: hops[(i + 7 * j) % len(hops)] for j, sid in enumerate(ids)}  # each stream its own audio
            t0 = time.perf_counter()
            ms.step(batch)  # returns host arrays: waits for the results
            if i >= warm:
                times.append(time.perf_counter() - t0)
        t = np.asarray(times) * 1e3
        p99 = float(np.percentile(t, 99))
        per_n[str(n)] = {"median_ms": float(np.median(t)), "p99_ms": p99, "compilations": ms.traces}
        if p99 >= hop_ms:
            break
        best, n = n, 2 * n
    return {"batched": per_n, "max_streams_within_hop": best}


#: Dense peak FLOP/s per chip for MFU (vendor figures, without sparsity): (float32, bfloat16). Matched against
#: ``device_kind`` by substring; ``--peak-tflops`` overrides.
PEAK_TFLOPS = {"H200": (67.0, 989.0), "H100": (67.0, 989.0), "A100": (19.5, 312.0), "L4": (30.3, 121.0),
               "A10": (31.2, 125.0), "V100": (15.7, 125.0), "T4": (8.1, 65.0), "TPU v4": (275.0, 275.0),
               "TPU v5 lite": (197.0, 197.0), "TPU v5e": (197.0, 197.0), "TPU v5p": (459.0, 459.0),
               "TPU v6": (918.0, 918.0)}


def _peak_flops(kind: str, bf16: bool, override: float | None) -> float | None:
    if override:
        return override * 1e12
    for k, v in PEAK_TFLOPS.items():
        if k.lower() in kind.lower():
            return v[1 if bf16 else 0] * 1e12
    return None


def worker_accel(args) -> dict:
    """DCCRN-CL training on the first accelerator at each of ``--accel-batches`` (default 8 and 64), 4 s examples:
    step time, audio-hours per hour, FLOP/s (XLA's count and the nominal 3 x 17 GFLOP per audio second) and MFU
    (model FLOPs utilisation: nominal FLOP/s over the chip's peak for the products' dtype)."""
    import jax

    if jax.devices()[0].platform == "cpu":
        return {"skipped": True, "reason": "no accelerator visible to JAX"}
    kind = str(jax.devices()[0].device_kind)
    bf16 = args.overrides.get("compute_dtype") == "bfloat16"
    peak = _peak_flops(kind, bf16, args.peak_tflops)
    out = {"device": kind, "n_devices": jax.device_count(), "peak_flop_per_s": peak, "bf16": bf16}
    for batch in args.accel_batches:
        args.batch = batch
        r = worker_train(args)
        audio_s = batch * args.seconds
        r["s_per_step"] = r["median_s_per_step"]
        r["nominal_flop_per_s"] = 3 * GFLOP_PER_AUDIO_S * 1e9 * audio_s / r["median_s_per_step"]
        if r.get("xla_flops_per_step"):
            r["xla_flop_per_s"] = r["xla_flops_per_step"] / r["median_s_per_step"]
        r["mfu"] = r["nominal_flop_per_s"] / peak if peak else None
        out[f"batch{batch}"] = r
    return out


WORKERS = {"train": worker_train, "infer": worker_infer, "stream": worker_stream, "accel": worker_accel}


def run_worker(argv) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=sorted(WORKERS), required=True)
    ap.add_argument("--model", default="dccrn-cl")
    ap.add_argument("--override", action="append", default=[],
                    help="model field=value (value parsed as JSON if possible), e.g. impl=native")
    ap.add_argument("--conv-lowering", default="auto", choices=["matmul", "xla", "auto"],
                    help="the model's conv_lowering (get_model(..., conv_lowering=...); the streamer sets its own)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="stream: passes over the 4 s of hops")
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "int8"],
                    help="stream: stored weights (Streamer(precision=...))")
    ap.add_argument("--max-streams", type=int, default=16,
                    help="stream: largest N of the batched-hop sweep (N = 1, 2, 4, ...; 0: none)")
    ap.add_argument("--batch-hops", type=int, default=200, help="stream: timed batched hops per N")
    ap.add_argument("--accel-batches", type=lambda s: [int(v) for v in s.split(",")], default=[8, 64])
    ap.add_argument("--step", default="plain", choices=["plain", "trainer"],
                    help="train: a plain jit(value_and_grad) over get_model, or jaxse.train's step")
    ap.add_argument("--peak-tflops", type=float, default=None, help="accel: chip peak for MFU (default: table)")
    args = ap.parse_args(argv)
    if args.batch is None:
        args.batch = TRAIN_BATCH if args.worker in ("train", "accel") else 1
    args.overrides = {}
    for kv in args.override:
        k, v = kv.split("=", 1)
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            pass
        args.overrides[k] = tuple(v) if isinstance(v, list) else v
    args.overrides["conv_lowering"] = args.conv_lowering
    sys.path.insert(0, REPO)
    import jax

    res = WORKERS[args.worker](args)
    res.update({"system": "jaxse", "worker": args.worker, "model": args.model, "overrides": args.override,
                "batch": args.batch, "audio_s": args.seconds, "steps": args.steps, "warmup": args.warmup,
                "self_peak_rss_mib": round(_vm_hwm_mib(), 1), "jax": jax.__version__,
                "backend": jax.devices()[0].platform,
                "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "conv_lowering": args.conv_lowering})
    print(json.dumps(res))
    return 0


# ================================================================================================================
# Orchestration
# ================================================================================================================
class Lock:
    def __init__(self, path: str | None):
        self.path, self.f = path, None

    def __enter__(self):
        if self.path:
            self.f = open(self.path, "a")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.f:
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()


def run_child(cmd: list[str], env_extra: dict, lock: Lock, timeout: float, cpus: str | None = None) -> dict:
    """Run one measurement in a fresh process; return its last JSON line plus ``peak_rss_mib``: the child's own
    ``ru_maxrss`` as the kernel reports it to the parent (``os.wait4``)."""
    import tempfile
    import threading

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd  # taskset execs the command: same process, same rusage
    with lock, tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fout, stderr=ferr, env=env, cwd=REPO, text=True)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (err or out).strip().splitlines()[-4:]
        why = "timed out" if wall >= timeout else f"exit {p.returncode}"
        return {"error": f"{why}: " + " | ".join(tail)}
    res = json.loads(lines[-1])
    res["wall_s"] = round(wall, 1)
    res["peak_rss_mib"] = round(ru.ru_maxrss / 1024.0, 1)
    return res


def jax_cmd(worker: str, model: str, *extra: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--worker", worker, "--model", model, *extra]


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.3g}{unit}"


def measure_all(args) -> tuple[dict, list]:
    lock = Lock(args.lock)
    q = args.quick
    steps = ["--steps", "2", "--warmup", "1"] if q else ["--steps", str(args.steps), "--warmup", "2"]
    train_extra = ["--seconds", "1"] if q else []
    peer = args.peer_python if args.peer_python and os.path.exists(args.peer_python) else None
    peer_script = os.path.join(HERE, "peer_bench.py")
    rows: dict[str, dict] = {}
    only = set(args.only.split(",")) if args.only else None
    settings = {"default": {}, "tuned": dict(MALLOC_TUNED)}
    one_thread = {"XLA_FLAGS": ONE_THREAD_XLA, "OMP_NUM_THREADS": "1"}

    def run(key, cmd, env, timeout, cpus=None):
        if only and not any(key.startswith(o) for o in only):
            return
        print(f"[bench] {key} ...", file=sys.stderr, flush=True)
        rows[key] = run_child(cmd, env, lock, timeout, cpus)
        r = rows[key]
        print(f"[bench] {key}: " + (r["error"] if "error" in r else
              ", ".join(f"{k}={fmt(r[k])}" for k in ("median_s_per_step", "compile_s", "rtf", "median_ms",
                                                      "p99_ms", "peak_rss_mib") if k in r)),
              file=sys.stderr, flush=True)

    tl, il = ["--conv-lowering", args.train_lowering], ["--conv-lowering", args.infer_lowering]
    for setting, env in settings.items():
        run(f"train/dccrn-cl/jaxse/{setting}", jax_cmd("train", "dccrn-cl", *steps, *train_extra, *tl), env, 3600)
        run(f"train/dccrn-cl/jaxse-trainer/{setting}",
            jax_cmd("train", "dccrn-cl", *steps, *train_extra, *tl, "--step", "trainer"), env, 3600)
        if peer:
            run(f"train/dccrn-cl/peer/{setting}", [peer, peer_script, "train", *steps[:2], *train_extra], env, 3600)
        run(f"train/crn/jaxse/{setting}", jax_cmd("train", "crn", *steps, *train_extra, *tl), env, 3600)
    for setting, env in settings.items():
        run(f"infer/dccrn-cl/jaxse/{setting}", jax_cmd("infer", "dccrn-cl", *steps, *il), env, 1800)
        if peer:
            run(f"infer/dccrn-cl/peer/{setting}", [peer, peer_script, "infer", *steps[:2]], env, 1800)
        run(f"infer/crn/jaxse/{setting}", jax_cmd("infer", "crn", *steps, *il), env, 1800)
    stream_extra = ["--seconds", "1", "--batch-hops", "20", "--max-streams", "4"] if q else ["--repeats", "2"]
    for label, model, over in STREAM_MODELS:
        model = model + "-tiny" if args.stream_tiny else model
        for variant, extra in STREAM_VARIANTS.items():
            run(f"stream/{label}/jaxse/{variant}", jax_cmd("stream", model, *stream_extra, *over, *extra),
                one_thread, 1800, cpus="0")
    if peer:
        run("stream/dccrn-cl/peer/default", [peer, peer_script, "stream"], one_thread, 600, cpus="0")
    if not only or any(o.startswith("accel") for o in only):
        probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices()[0].platform)"],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
        platform_ = probe.stdout.strip() or "unknown"
        if platform_ not in ("cpu", "unknown"):
            run("accel/dccrn-cl/jaxse/default", jax_cmd("accel", "dccrn-cl", *steps, *tl), {}, 3600)
            run("accel/dccrn-cl/jaxse/bf16", jax_cmd("accel", "dccrn-cl", *steps, *tl,
                                                     "--override", "compute_dtype=bfloat16"), {}, 3600)
        else:
            rows["accel/dccrn-cl/jaxse/default"] = {"skipped": True, "reason": f"JAX platform is {platform_}"}
    return rows, []


def table(rows: dict, peer_given: bool) -> tuple[list[list[str]], dict]:
    """Rows of (measure, jaxse, peer, ratio, goal, met) and a summary of goals."""
    out, goals = [], {}

    def get(key, field):
        r = rows.get(key) or {}
        return None if "error" in r or r.get("skipped") else r.get(field)

    def note(key):
        r = rows.get(key)
        if r is None:
            return "not run" if ("/peer/" not in key or peer_given) else "no peer"
        if "error" in r:
            return "error"
        if r.get("skipped"):
            return "n/a"
        return None

    def row(measure, jk, pk, field, scale=1.0, unit="", goal=None, test=None, ratio_kind="j/p"):
        j, p = get(jk, field) if jk else None, get(pk, field) if pk else None
        j = None if j is None else j * scale
        p = None if p is None else p * scale
        ratio = None
        if j is not None and p is not None and j > 0:
            ratio = (p / j) if ratio_kind == "p/j" else (j / p)
        met = None
        if test is not None:
            met = test(j, p, ratio)
            goals[measure] = met
        out.append([measure, note(jk) or fmt(j, unit) if jk else "-", (note(pk) or fmt(p, unit)) if pk else "-",
                    "-" if ratio is None else (f"{ratio:.2f}x speed-up" if ratio_kind == "p/j" else f"{ratio:.2f}"),
                    goal or "", {True: "yes", False: "NO", None: "-"}[met] if test else ""])

    for kind, label in (("jaxse-trainer", "trainer step"), ("jaxse", "plain jit step over get_model")):
        for s in ("default", "tuned"):
            mal = "malloc " + s
            row(f"DCCRN-CL train s/step, B8x4s, {mal}, {label}", f"train/dccrn-cl/{kind}/{s}",
                f"train/dccrn-cl/peer/{s}", "median_s_per_step", unit=" s", ratio_kind="p/j",
                goal=">= 2x faster" if s == "default" else "faster",
                test=(lambda j, p, r, s=s: None if r is None else (r >= 2.0 if s == "default" else r > 1.0)))
        row(f"  jaxse (malloc default) vs peer (malloc tuned), {label}", f"train/dccrn-cl/{kind}/default",
            "train/dccrn-cl/peer/tuned", "median_s_per_step", unit=" s", ratio_kind="p/j", goal="faster",
            test=lambda j, p, r: None if r is None else r > 1.0)
        for s in ("default", "tuned"):
            row(f"DCCRN-CL train peak RSS, malloc {s}, {label}", f"train/dccrn-cl/{kind}/{s}",
                f"train/dccrn-cl/peer/{s}", "peak_rss_mib", unit=" MiB", goal="<= peer",
                test=lambda j, p, r: None if r is None else r <= 1.0)
        row(f"DCCRN-CL train compile, {label}", f"train/dccrn-cl/{kind}/default", None, "compile_s", unit=" s")
    for s in ("default", "tuned"):
        row(f"DCCRN-CL infer RTF, B1x4s, malloc {s}", f"infer/dccrn-cl/jaxse/{s}", f"infer/dccrn-cl/peer/{s}",
            "rtf", goal="<= 0.7x peer", test=lambda j, p, r: None if r is None else r <= 0.7)
        row(f"DCCRN-CL infer peak RSS, malloc {s}", f"infer/dccrn-cl/jaxse/{s}", f"infer/dccrn-cl/peer/{s}",
            "peak_rss_mib", unit=" MiB")
    for (m, _, _), hop in zip(STREAM_MODELS, (6.25, 6.25, 10.0)):
        for prec, tag in STREAM_VARIANT_TAGS.items():
            k = f"stream/{m}/jaxse/{prec}"
            pk = "stream/dccrn-cl/peer/default" if m == "dccrn-cl" else None
            share = 0.15 if m == "crn" else 0.25  # issue 25's goals
            row(f"{m.upper()} stream per-hop median, 1 thread{tag}", k, pk, "median_ms", unit=" ms")
            row(f"{m.upper()} stream per-hop p99, 1 thread{tag}", k, pk, "p99_ms", unit=" ms",
                goal=f"<= {share * hop:.4g} ms ({share:.0%} of {hop:g} ms hop)",
                test=lambda j, p, r, lim=share * hop: None if j is None else j <= lim)
            want = 8 if m == "crn" else 4
            row(f"{m.upper()} streams per batched hop with p99 < hop, 1 thread{tag}", k, None,
                "max_streams_within_hop", goal=f">= {want}", test=lambda j, p, r, want=want: None if j is None
                else j >= want)
            row(f"{m.upper()} stream peak RSS{tag}", k, pk, "peak_rss_mib", unit=" MiB")
    for s in ("default", "tuned"):
        k = f"train/crn/jaxse/{s}"
        row(f"CRN train s/step, B8x4s, malloc {s}", k, None, "median_s_per_step", unit=" s")
        row(f"CRN train peak RSS, malloc {s}", k, None, "peak_rss_mib", unit=" MiB")
        k = f"infer/crn/jaxse/{s}"
        row(f"CRN infer RTF, B1x4s, malloc {s}", k, None, "rtf")
        row(f"CRN infer peak RSS, malloc {s}", k, None, "peak_rss_mib", unit=" MiB")
    acc = rows.get("accel/dccrn-cl/jaxse/default") or {}
    if acc and not acc.get("skipped") and "error" not in acc:
        for key in ("accel/dccrn-cl/jaxse/default", "accel/dccrn-cl/jaxse/bf16"):
            a = rows.get(key) or {}
            prec = "bf16 products" if key.endswith("bf16") else "fp32"
            for b, r in a.items():
                if b.startswith("batch") and isinstance(r, dict):
                    mfu = r.get("mfu")
                    out.append([f"DCCRN-CL {a.get('device')} train {b} ({prec}): s/step, audio-h/h, XLA TFLOP/s, "
                                "nominal TFLOP/s, MFU",
                                f"{r['median_s_per_step']:.3g}, {r['audio_h_per_h']:.0f}, "
                                f"{(r.get('xla_flop_per_s') or 0) / 1e12:.2f}, {r['nominal_flop_per_s'] / 1e12:.2f}, "
                                + ("-" if mfu is None else f"{100 * mfu:.1f} %"), "-", "-", "", ""])
            if "error" in a:
                out.append([f"DCCRN-CL accelerator ({prec})", "error: " + a["error"][:80], "-", "-", "", ""])
    else:
        out.append(["DCCRN-CL on an accelerator", "n/a: " + str(acc.get("reason", acc.get("error", "not run"))),
                    "-", "-", "", ""])
    return out, goals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", default=os.environ.get("JAXSE_PEER_PYTHON"),
                    help="python of the peer's venv (default: $JAXSE_PEER_PYTHON)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 1 s training audio")
    ap.add_argument("--steps", type=int, default=10, help="timed steps/runs after 2 warm-ups (default 10)")
    ap.add_argument("--lock", default=os.environ.get("JAXSE_BENCH_LOCK"),
                    help="flock this file during each measurement (default: $JAXSE_BENCH_LOCK)")
    ap.add_argument("--only", default=None, help="comma-separated key prefixes, e.g. train/dccrn-cl,stream")
    ap.add_argument("--json-out", default=None, help="also write every raw figure to this file")
    ap.add_argument("--stream-tiny", action="store_true",
                    help="stream rows on the tiny models (dccrn-cl-tiny, crn-tiny): checks the code, no figures")
    ap.add_argument("--train-lowering", default="auto", choices=["matmul", "xla", "auto"],
                    help="the models' conv_lowering in training steps (default auto: matmul on CPU)")
    ap.add_argument("--infer-lowering", default="auto", choices=["matmul", "xla", "auto"],
                    help="the models' conv_lowering in offline inference (default auto: xla); streaming uses the "
                         "streamer's own (matmul)")
    args = ap.parse_args(argv)
    if args.peer_python and not os.path.exists(args.peer_python):
        print(f"[bench] peer python {args.peer_python} not found: peer rows skipped", file=sys.stderr)
    elif not args.peer_python:
        print("[bench] no --peer-python / JAXSE_PEER_PYTHON: peer rows skipped", file=sys.stderr)
    t0 = time.time()
    rows, _ = measure_all(args)
    lines, goals = table(rows, bool(args.peer_python))
    machine = _machine()
    head = ["measure", "jaxse", "peer", "ratio", "goal", "met?"]
    print(f"\njaxse vs PyTorch reference (asteroid DCCRNet DCCRN-CL) on {machine}; "
          f"{'QUICK smoke run, not comparable; ' if args.quick else ''}"
          f"{'stream rows on the TINY models, not comparable; ' if args.stream_tiny else ''}"
          f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for ln in lines:
        print("| " + " | ".join(ln) + " |")
    print(f"\njaxse Conv2D lowering: {args.train_lowering} (training), {args.infer_lowering} (inference); peak RSS = the process's ru_maxrss; training uses plain Adam "
          "(no clipping) like the peer; CRN trains on its magnitude MSE, DCCRN-CL on negative SI-SNR.")
    summary = {"machine": machine, "quick": args.quick, "stream_tiny": args.stream_tiny,
               "conv_lowering": {"train": args.train_lowering, "infer": args.infer_lowering}, "date": time.strftime("%Y-%m-%d"),
               "wall_s": round(time.time() - t0), "goals": goals, "results": rows}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return 0


def _machine() -> str:
    model, cpus = platform.processor() or "unknown CPU", os.cpu_count()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {cpus} CPU cores"


if __name__ == "__main__":
    if "--worker" in sys.argv:
        sys.exit(run_worker(sys.argv[1:]))
    sys.exit(main())
