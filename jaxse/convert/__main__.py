"""``python -m jaxse.convert asteroid-dccrnet IN.pth OUT_DIR [force=true]`` (or ``format=... input=... output=...``):
import weights of other toolkits into a jaxse checkpoint that enhance, evaluate, stream and export accept."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from jaxse import cli
from jaxse.convert.asteroid import convert_asteroid_dccrnet
from jaxse.errors import UsageError

CONVERTERS = {"asteroid-dccrnet": convert_asteroid_dccrnet}
KEYS = (
    cli.Key("format", tuple(sorted(CONVERTERS)), required=True, help="source format"),
    cli.Key("input", required=True, help="input checkpoint (e.g. an asteroid .pth)"),
    cli.Key("output", required=True, help="jaxse checkpoint workdir to write"),
    cli.Key("force", bool, False, help="write into a non-empty output, deleting its checkpoints/ folder first"),
)


def _main(argv: list[str]) -> int:
    argv = ["force=true" if a == "--force" else a for a in argv]  # the flag form of earlier releases
    args = cli.parse(argv, KEYS, positional=("format", "input", "output"))
    out = Path(args["output"])
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args["force"]:
        raise UsageError(f"{str(out)!r} exists and is not empty; pass force=true (or --force) to write into it")
    name, overrides, variables = CONVERTERS[args["format"]](args["input"])

    from jaxse.io.checkpoints import CKPT_DIR, model_meta, save_model
    from jaxse.models import count_params

    if args["force"] and (out / CKPT_DIR).is_dir():
        shutil.rmtree(out / CKPT_DIR)
        print(f"force: removed {out / CKPT_DIR}")
    overrides = model_meta(name, overrides)["overrides"]
    path = save_model(out, model_name=name, variables=variables, model_overrides=overrides,
                      extra_meta={"converted_from": {"format": args["format"],
                                                     "path": os.path.basename(args["input"])}})
    print(f"converted {args['input']} ({args['format']}) -> model {name} {overrides or ''}")
    print(f"parameters: {count_params(variables['params']):,}")
    print(f"wrote {path}")
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.convert", _main, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
