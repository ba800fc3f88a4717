"""``python -m jaxse.export checkpoint=WORKDIR [format=saved_model|tflite] [output=DIR] [batch=N] [step=N] [force=true]``."""
from __future__ import annotations

import sys
from typing import Any

from jaxse.export.jax2tf_export import FORMATS, SIGNATURE_FILE, ExportError, export

_KEYS = ("checkpoint", "format", "output", "batch", "step", "force")


def _parse(argv: list[str]) -> dict:
    def fail(msg):
        raise SystemExit(f"jaxse.export: error: {msg}")

    from jaxse.config import ConfigError, parse_key_values

    try:
        args: dict[str, Any] = dict(parse_key_values(argv, _KEYS, required=("checkpoint",)))
    except ConfigError as e:
        fail(str(e))
    args.setdefault("format", "saved_model")
    if args["format"] not in FORMATS:
        fail(f"bad value format={args['format']!r}; valid: {', '.join(FORMATS)}")
    for k in ("batch", "step"):
        if k in args:
            try:
                args[k] = int(args[k])
                if args[k] < (1 if k == "batch" else 0):
                    raise ValueError
            except ValueError:
                fail(f"bad value {k}={args[k]!r}; expected an integer >= {1 if k == 'batch' else 0}")
    f = args.get("force", "false").lower()
    if f not in ("true", "false", "1", "0", "yes", "no"):
        fail(f"bad value force={args['force']!r}; expected true or false")
    args["force"] = f in ("true", "1", "yes")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parse(argv)
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        return 2
    from jaxse.io.checkpoints import CheckpointError, resolve

    try:
        if "output" not in args:  # WORKDIR/export/<format>
            args["output"] = str(resolve(args["checkpoint"], args.get("step"))[0] / "export" / args["format"])
        path = export(args["checkpoint"], args["output"], format=args["format"], batch=args.get("batch", 1),
                      step=args.get("step"), force=args["force"])
    except (ExportError, CheckpointError) as e:
        print(f"jaxse.export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} (+ {SIGNATURE_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
