"""The shipped policies: loadable for their model, and the command that makes them runs."""
import subprocess
import sys

import pytest

from helpers import trained
from tvm_quantmcu.models.policies import SHIPPED, SHIPPED_PHI, SRAM_KB, available, load_policy
from tvm_quantmcu.search import SearchParams


def test_regeneration_command_has_a_help():
    r = subprocess.run([sys.executable, "-m", "tvm_quantmcu.search.shipped", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--models" in r.stdout, r.stderr


@pytest.mark.parametrize("model", sorted(SRAM_KB))
def test_shipped_policies_load_and_record_the_current_search_defaults(model):
    if not trained(model):
        pytest.skip(f"{model} has no trained checkpoint")
    assert set(SHIPPED) <= set(available(model))
    pol = load_policy(model, "quantmcu")
    assert pol.model == model and pol.name == "quantmcu"
    # made with today's SearchParams and device Φ: regenerate (python -m
    # tvm_quantmcu.search.shipped) after changing a default
    assert pol.params["phi"] == SHIPPED_PHI
    # the device-Φ search records every plan it tried (the int8 plan with and without VDPC,
    # the memory-aware ones) and ships one of them
    tried = pol.params["candidates"]
    assert len(tried) >= 2 and tried[0]["vdpc"] and not tried[1]["vdpc"]
    assert [list(pol.grid), pol.vdpc] in [[c["grid"], c["vdpc"]] for c in tried]
