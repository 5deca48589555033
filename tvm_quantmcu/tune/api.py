"""Tune a zoo model's kernels on a board: `tune_model` is what `quantmcu tune` runs."""
from __future__ import annotations

import time

DEFAULT_TRIALS = 64
DEFAULT_DB = "quantmcu-out/tuning-db"


def board_of(board: str):
    """(qemu machine, kernel target) of a deploy board name; only QEMU boards can be timed."""
    from ..deploy import BOARDS, DeployError
    if board not in BOARDS:
        raise DeployError(f"unknown board {board!r}; tuning runs on {', '.join(_qemu_boards())}")
    spec = BOARDS[board]
    if spec.template != "qemu":
        raise DeployError(f"board {board!r} cannot time kernels (no instruction counter); "
                          f"tune on one of {', '.join(_qemu_boards())}")
    return spec.qemu_board, spec.target


def _qemu_boards() -> list[str]:
    from ..deploy import BOARDS
    return [b for b, s in BOARDS.items() if s.template == "qemu"]


def model_tasks(model, policy: str, target: str, policy_file: str | None = None,
                data_source=None):
    """(tasks, policy name, outlier rate) of the model's generated program (model: a zoo
    name, FILE.pt2, FILE.py:factory or a ModelRef)."""
    from .. import pipeline
    from ..codegen import program_of_module
    from ..deploy import lowered_module, resolve_policy
    from .tasks import estimate_outlier_rate, extract_tasks
    imp = pipeline.load(model)
    pol = resolve_policy(imp, policy, policy_file, data_source=data_source)
    prog = program_of_module(lowered_module(imp, pol, target), imp.name)
    rate = estimate_outlier_rate(imp.graph, pol, data_source=data_source)
    return extract_tasks(prog, rate), pol.name, rate


def tune_model(model, board: str = "qemu-m4", policy: str = "quantmcu",
               trials: int = DEFAULT_TRIALS, db_dir=DEFAULT_DB, workers: int | None = None,
               tracker: str | None = None, key: str | None = None, seed: int = 0,
               trials_per_task: int | None = None, policy_file: str | None = None,
               bar_factory=None, timeout: float | None = None, data_source=None) -> dict:
    from .. import pipeline
    from .tuner import Tuner
    t0 = time.time()
    qemu_board, target = board_of(board)
    with Tuner(db_dir, qemu_board, target, workers, tracker, key, seed, trials_per_task,
               bar_factory=bar_factory, timeout=timeout) as tuner:  # a bad --db fails first
        tasks, pol_name, rate = model_tasks(model, policy, target, policy_file, data_source)
        res = tuner.tune(tasks, trials)
    return {"model": pipeline.load(model).name, "board": board, "policy": pol_name,
            "target": target,
            "db": str(db_dir), "trials": trials, "seed": seed, "outlier_rate": round(rate, 4),
            "tracker": tracker, **res, "seconds": round(time.time() - t0, 1)}
