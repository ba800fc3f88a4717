"""Training: ``python -m jaxse.train experiment=dccrn [key=value ...]``.

Keys: every key of the schema in ``jaxse/config.py`` (listed below), as Hydra overrides; ``experiment=NAME`` and
``data=NAME`` choose the YAML files under ``experiments/``. Running the same command on the same workdir resumes.
"""
from __future__ import annotations

import sys

from jaxse import cli, config


def _help() -> str:
    return (__doc__.strip() + "\n\nExperiments: " + ", ".join(config.options("experiment")) + "\nData: "
            + ", ".join(config.options("data")) + " (data keys: DataConfig and its kinds in jaxse/config.py)\n\n"
            + "\n".join(config.describe()))


def _main(argv: list[str]) -> int:
    cfg = config.compose(argv)
    if cfg.trainer.tune_malloc:
        from jaxse.train import malloc

        malloc.tune()
    from jaxse.train import loop

    summary = loop.train_and_evaluate(cfg)
    sig = summary.get("signal")
    return cli.EXIT_SIGNAL + int(sig) if isinstance(sig, int) else cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(_help())
        return cli.EXIT_OK
    return cli.run("jaxse.train", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
