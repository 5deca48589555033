"""On-device autotuning of the kernels' schedule knobs with TVM meta_schedule.

* :mod:`.tasks` — a model's tuning tasks (distinct kernel specs, weighted by runs/inference)
* :mod:`.space` — the knob design space (ScheduleFn of sample_categorical decisions)
* :mod:`.features` — features of the XGBoost cost model
* :mod:`.strategy` — search strategy: untried points of the space, best predicted first
* :mod:`.harness`, :mod:`.builder` — timing firmware of a candidate (qemu project template)
* :mod:`.measure`, :mod:`.runner` — timing over the RPC link, locally or via a TVM RPC tracker
* :mod:`.worker` — ``python -m tvm_quantmcu.tune.worker``: serves QEMU boards to a tracker
* :mod:`.database`, :mod:`.callbacks` — the persistent database and how trials reach it
* :mod:`.tuner`, :mod:`.api` — the session (baseline, plan, search, report); ``tune_model``

``kernel_lookup_from_db(db_dir, target)`` applies a database at compile time.
"""
from .database import TuningDatabaseError, kernel_lookup_from_db

__all__ = ["TuningDatabaseError", "kernel_lookup_from_db", "tune_model"]


def tune_model(*args, **kwargs):
    from .api import tune_model as _tune
    return _tune(*args, **kwargs)
