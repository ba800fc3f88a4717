"""``python -m jaxse.pretrained export WORKDIR NAME [step=N] [out=DIR]``: store a training run's checkpoint (best by
default) as the shipped model ``pretrained:NAME`` — float16 when the enhanced demo clips move by at most 1e-3
(max abs), else float32. The run's ``compute_dtype`` is not stored (it is a run-time choice, ``precision=`` in the
CLIs): a shipped model computes in float32 unless asked otherwise. ``python -m jaxse.pretrained list`` prints the
shipped models."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from jaxse import cli, pretrained
from jaxse.errors import UsageError

KEYS = (
    cli.Key("action", ("export", "list"), required=True,
            help="export: store a run's checkpoint as pretrained:NAME; list: print the shipped models"),
    cli.Key("workdir", help="training workdir (export)"),
    cli.Key("name", help="name of the shipped model, e.g. dccrn-cl (export)"),
    cli.STEP_KEY,
    cli.Key("out", help="folder to write into (default: the installed jaxse/pretrained)"),
    cli.Key("tolerance", str, "1e-3", help="max abs output change allowed for float16"),
)


def _max_output_change(model, variables, arrays) -> float:
    import jax

    from jaxse.data import demo
    from jaxse.io.audio import read_audio

    clips = [read_audio(p, sample_rate=16000) for p in demo.paths("clean", "test")[:4]]
    n = min(len(c) for c in clips)
    x = np.stack([c[:n] for c in clips])
    f = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return float(np.max(np.abs(np.asarray(f(variables, x)) - np.asarray(f(pretrained.decode(arrays), x)))))


def _main(argv: list[str]) -> int:
    args = cli.parse(argv, KEYS, positional=("action", "workdir", "name"))
    if args["action"] == "list":
        for n in pretrained.names():
            meta = json.loads((pretrained.folder() / f"{n}.json").read_text())
            print(f"{pretrained.PREFIX}{n}: {meta['model']['name']} {meta['model'].get('overrides', {})}")
        return cli.EXIT_OK
    if not args["workdir"] or not args["name"]:
        raise UsageError("export needs WORKDIR and NAME: python -m jaxse.pretrained export WORKDIR NAME")
    from jaxse.io import checkpoints
    from jaxse.io.atomic import write_bytes

    model, variables, meta = checkpoints.load_model(args["workdir"], args["step"])
    tol = float(args["tolerance"])
    arrays16 = pretrained.encode(variables, "float16")
    change = _max_output_change(model, variables, arrays16)
    dtype = "float16" if change <= tol else "float32"
    arrays = arrays16 if dtype == "float16" else pretrained.encode(variables, "float32")
    out = Path(args["out"]) if args["out"] else pretrained.folder()
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(out / f"{args['name']}.npz", buf.getvalue())
    old = out / f"{args['name']}.json"
    info = json.loads(old.read_text()) if old.is_file() else {}  # keep hand-written notes (licence, figures)
    model_meta = dict(meta["model"], overrides={k: v for k, v in meta["model"].get("overrides", {}).items()
                                                if k != "compute_dtype"})
    info.update(model=model_meta, sample_rate=meta.get("sample_rate", 16000), step=int(meta["step"]),
                stored_as=dtype, float16_max_output_change=change, trained_in=str(meta.get("name", "")))
    if meta.get("init_from"):  # a fine-tuned run: where its weights started
        info["init_from"] = meta["init_from"]
    write_bytes(old, (json.dumps(info, indent=1) + "\n").encode())
    print(f"wrote {out / (args['name'] + '.npz')} ({dtype}; float16 moves the output by {change:.2e}) and {old}")
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.pretrained", _main, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
