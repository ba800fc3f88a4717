"""Training: the pure update step (``step``), many devices and hosts (``distributed``), the run with its evaluation,
checkpoints and resume (``loop``) and the small objects it drives (``checkpointing``, ``stop``, ``validation``,
``timing``, ``schedule``), what it records (``logging``). ``python -m jaxse.train experiment=dccrn``."""
from jaxse.train.distributed import AXIS  # noqa: F401
from jaxse.train.loop import TrainingError, final_report, run_eval, train_and_evaluate  # noqa: F401
from jaxse.train.step import TrainState, create_state, make_eval_step, make_train_step  # noqa: F401
