"""``python -m jaxse.export checkpoint=WORKDIR [format=saved_model|tflite|onnx] [output=DIR] [batch=N] [step=N]
[force=true]``: export the streaming step (default output ``WORKDIR/export/<format>``; format=onnx needs
``pip install 'jaxse[onnx]'``)."""
from __future__ import annotations

import sys

from jaxse import cli
from jaxse.export.jax2tf_export import FORMATS, SIGNATURE_FILE, export

KEYS = (
    cli.Key("checkpoint", required=True, help="training workdir, its checkpoints/ folder or a step folder"),
    cli.Key("format", FORMATS, "saved_model", help="what to write; onnx needs pip install 'jaxse[onnx]'"),
    cli.Key("output", help="output folder (default WORKDIR/export/<format>)"),
    cli.Key("batch", int, 1, min=1, help="parallel streams, fixed in the exported shapes"),
    cli.STEP_KEY,
    cli.Key("force", bool, False, help="replace an existing output"),
)


def _main(argv: list[str]) -> int:
    args = cli.parse(argv, KEYS)
    from jaxse.io.checkpoints import resolve

    if args["output"] is None:
        args["output"] = str(resolve(args["checkpoint"], args["step"])[0] / "export" / args["format"])
    path = export(args["checkpoint"], args["output"], format=args["format"], batch=args["batch"], step=args["step"],
                  force=args["force"])
    print(f"wrote {path} (+ {SIGNATURE_FILE})")
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.export", _main, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
