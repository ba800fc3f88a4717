"""``python -m jaxse.convert asteroid-dccrnet IN.pth OUT_DIR [--force]``: import weights of other toolkits."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from jaxse.convert.asteroid import ConversionError, convert_asteroid_dccrnet

CONVERTERS = {"asteroid-dccrnet": convert_asteroid_dccrnet}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jaxse.convert", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("format", choices=sorted(CONVERTERS), help="source format")
    ap.add_argument("src", help="input checkpoint (e.g. an asteroid .pth)")
    ap.add_argument("out_dir", help="jaxse checkpoint workdir to write")
    ap.add_argument("--force", action="store_true",
                    help="write into a non-empty OUT_DIR, deleting its checkpoints/ folder first")
    args = ap.parse_args(argv)

    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        print(f"error: {str(out)!r} exists and is not empty; pass --force to write into it", file=sys.stderr)
        return 2
    from jaxse.convert.torch_pickle import TorchFileError

    try:
        name, overrides, variables = CONVERTERS[args.format](args.src)
    except (ConversionError, TorchFileError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    from jaxse.io.checkpoints import CKPT_DIR, model_meta, save_model
    from jaxse.models import count_params

    if args.force and (out / CKPT_DIR).is_dir():
        shutil.rmtree(out / CKPT_DIR)
        print(f"--force: removed {out / CKPT_DIR}")

    overrides = model_meta(name, overrides)["overrides"]
    path = save_model(out, model_name=name, variables=variables, model_overrides=overrides,
                      extra_meta={"converted_from": {"format": args.format, "path": os.path.basename(args.src)}})
    n = count_params(variables["params"])
    print(f"converted {args.src} ({args.format}) -> model {name} {overrides or ''}")
    print(f"parameters: {n:,}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
