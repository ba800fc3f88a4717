"""``python -m jaxse.models``: a table of every model — parameters (vs the paper), latency, MACs per second."""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

from jaxse import cli
from jaxse.models import MODEL_NAMES, PAPER_PARAMS, count_params, get_model, init_shapes
from jaxse.models.base import SAMPLE_RATE


def macs_per_second(model) -> float:
    """Multiply-accumulates per second of audio, counted by XLA on the forward pass of 1 s (batch 1).

    Complex products are lowered to four real products (``impl="real"``) for the count, the conventional
    figure; the default Gauss lowering executes 25 % fewer multiplications in the convolutions and dense layers.
    XLA counts the body of the LSTM's time loop once, so the recurrent products of the other frames are added
    here: ``H x 4H`` per frame and layer, four times for the complex LSTM (two weight parts x two input parts).
    """
    if hasattr(model, "impl"):
        model = model.clone(impl="real")
    x = jax.ShapeDtypeStruct((1, SAMPLE_RATE), jnp.float32)
    variables = init_shapes(model)
    cost = jax.jit(lambda v, a: model.apply(v, a)).lower(variables, x).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    frames = model.analysis(jnp.zeros((1, SAMPLE_RATE))).shape[1]
    recurrent = sum(
        w.shape[0] * w.shape[1] * (4 if jnp.iscomplexobj(w) else 1)
        for path, w in jax.tree_util.tree_leaves_with_path(variables["params"])
        if getattr(path[-1], "key", None) == "w_h")
    return float(cost.get("flops", float("nan"))) / 2 + (frames - 1) * recurrent


KEYS = (cli.Key("all", bool, False, help="include the tiny test variants"),)


def _main(argv: list[str]) -> int:
    args = cli.parse(["all=true" if a == "--all" else a for a in argv], KEYS)
    rows = []
    for name in MODEL_NAMES:
        if name.endswith("-tiny") and not args["all"]:
            continue
        if name.startswith("crn") or name.endswith("-asteroid"):  # one time alignment each
            variants = [("", {})]
        else:
            variants = [(" (paper decoder)", {"decoder": "paper"}), (" (causal decoder)", {"decoder": "causal"})]
        for suffix, kw in variants:
            m = get_model(name, **kw)
            n = count_params(init_shapes(m)["params"])
            paper = PAPER_PARAMS.get(name)
            ref = f"{paper / 1e6:.3f} M ({100 * (n / paper - 1):+.2f} %)" if paper else "-"
            rows.append((name + suffix, f"{n:,}", ref, f"{m.latency_ms:.2f}", f"{macs_per_second(m) / 1e9:.2f}"))
    head = ("model", "params", "paper", "latency ms", "GMAC/s audio")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.models", _main, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
