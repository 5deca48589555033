"""
Autotune the kernels on the device
==================================

The kernels of a generated model have schedule knobs (where the padded input is produced,
unrolling, register blocking — pairs of pixels or whole rows, where the outputs are
requantized, the compiler pragma). ``quantmcu tune`` searches them with TVM's
``meta_schedule``: each tuning task is one distinct kernel of the model's program, weighted by
how often it runs per inference; candidates are built into a one-kernel timing firmware, booted
on QEMU through the project API, and timed over the serial RPC link in guest instructions; an
XGBoost cost model ranks the untried candidates; every measurement lands in a database that
``quantmcu deploy --tuning-db`` applies at compile time.

This tutorial tunes ``mbv2-fmnist`` (QuantMCU policy) on the emulated Cortex-M4 and compares
the end-to-end instructions per inference with and without the database.

Run it with ``python tutorials/03_autotune_on_device.py`` (``QUANTMCU_FAST=1``: a few trials).
It needs ``qemu-system-arm`` and ``arm-none-eabi-gcc``.
"""
# %%
# Tune
# ----
# ``trials`` is the model's measurement budget in this database: every task's default is timed
# first, then the heaviest tasks get candidates. Re-running with the same budget measures
# nothing new.
import os
import tempfile
from pathlib import Path

from tvm_quantmcu.deploy import deploy
from tvm_quantmcu.tune import kernel_lookup_from_db, tune_model

FAST = os.environ.get("QUANTMCU_FAST") == "1"
TRIALS = 8 if FAST else 64
IMAGES = 3 if FAST else 50
work = Path(tempfile.mkdtemp(prefix="quantmcu-tune-"))
db = work / "tuning-db"

res = tune_model("mbv2-fmnist", board="qemu-m4", policy="quantmcu", trials=TRIALS,
                 db_dir=db)
k = res["kernel_instructions_per_inference"]
print(f"{len(res['tasks'])} tasks, {res['new_measurements']} measurements, "
      f"{res['failed_trials']} failed; kernel instructions per inference "
      f"{k['default']:,} → {k['tuned']:,} (×{k['ratio']})")
for t in sorted(res["tasks"], key=lambda t: -(t["default_instructions"] or 0))[:5]:
    print(f"    {t['name']}: default {t['default_instructions']:,}, best "
          f"{t['best_instructions']:,} after {t['trials']} trials ({t['status']})")

# %%
# The database is persistent
# --------------------------
again = tune_model("mbv2-fmnist", board="qemu-m4", policy="quantmcu", trials=TRIALS,
                   db_dir=db)
print("second run, new measurements:", again["new_measurements"])
assert again["new_measurements"] == 0

# %%
# Deploy with and without the tuned schedules
# -------------------------------------------
# Tuned or not, every device output must equal the integer reference.
plain = deploy("mbv2-fmnist", "qemu-m4", "quantmcu", IMAGES, work / "untuned")
tuned = deploy("mbv2-fmnist", "qemu-m4", "quantmcu", IMAGES, work / "tuned",
               kernel_lookup=kernel_lookup_from_db(db, "cortex-m4"))
ratio = tuned["instructions_per_inference"] / plain["instructions_per_inference"]
print(f"instructions per inference: untuned {plain['instructions_per_inference']:,}, tuned "
      f"{tuned['instructions_per_inference']:,} (×{ratio:.4f}); match rate "
      f"{plain['match_rate']} / {tuned['match_rate']}")
assert plain["match_rate"] == tuned["match_rate"] == 1.0
# Tuning keeps a candidate only when it measured fewer instructions than the default.
assert ratio <= 1.001
