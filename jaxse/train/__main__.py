"""Training: ``python -m jaxse.train experiment=dccrn [key=value ...]``."""
from __future__ import annotations

import sys

from jaxse import config
from jaxse.io import checkpoints


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[0] + "\n\nKeys: see experiments/train.yaml; experiments: "
              + ", ".join(config.options("experiment")) + "; data: " + ", ".join(config.options("data")))
        return 0
    try:
        cfg = config.compose(argv)
    except config.ConfigError as e:
        print(f"jaxse.train: error: {e}", file=sys.stderr)
        return 2
    if cfg["trainer"]["tune_malloc"]:
        from jaxse.train import malloc

        malloc.tune()
    from jaxse.io.audio import AudioError
    from jaxse.train import loop

    try:
        summary = loop.train_and_evaluate(cfg)
    except (config.ConfigError, loop.TrainingError, checkpoints.CheckpointError, AudioError, ValueError) as e:
        print(f"jaxse.train: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, config.ConfigError) else 1
    return 128 + int(summary["signal"]) if isinstance(summary.get("signal"), int) else 0


if __name__ == "__main__":
    sys.exit(main())
