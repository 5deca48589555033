"""Flash by section: the micro-kernels' shared functions (weak, defined by every kernel file)
count once, as the linker keeps one copy, and only when some code calls them."""
import subprocess

import pytest

from helpers import have
from tvm_quantmcu.codegen.report import flash_by_section
from tvm_quantmcu.topi import KernelSpec, get_kernel
from tvm_quantmcu.topi.registry import TARGETS

pytestmark = pytest.mark.skipif(
    not have("arm-none-eabi-gcc") or not have("arm-none-eabi-readelf"),
    reason="needs the Arm toolchain (apt-get install gcc-arm-none-eabi binutils-arm-none-eabi)")

SPECS = [KernelSpec("conv2d", (4, 4, 16), 32, (1, 1)),
         KernelSpec("depthwise", (5, 6, 24), 24, (3, 3), (1, 1), (1, 1, 1, 1))]


class _Library:
    """The part of a generated model flash_by_section reads."""

    def __init__(self, directory):
        self.directory = directory

    @property
    def sources(self):
        return sorted(self.directory.glob("*.c"))


def _weak_sizes(src, tmp_path):
    """Bytes of the sections of the weak functions of the compiled kernel."""
    obj = tmp_path / (src.stem + ".o")
    subprocess.run(["arm-none-eabi-gcc", *TARGETS["cortex-m4"], "-O2", "-std=c11",
                    "-ffunction-sections", f"-I{src.parent}", "-c", str(src), "-o", str(obj)],
                   check=True)
    out = subprocess.run(["arm-none-eabi-nm", str(obj)], check=True, capture_output=True,
                         text=True).stdout
    weak = {f[2] for f in map(str.split, out.splitlines()) if len(f) == 3 and f[1] == "W"}
    out = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    return {f[0].rsplit(".", 1)[-1]: int(f[1]) for f in map(str.split, out.splitlines())
            if len(f) >= 2 and f[0].startswith(".text.") and f[0].rsplit(".", 1)[-1] in weak}


def test_shared_requantization_counts_once(tmp_path):
    alone, weak = [], {}
    for i, spec in enumerate(SPECS):
        k = get_kernel(spec, "dsp", "cortex-m4")
        src, = k.write(tmp_path / str(i))
        k.write(tmp_path / "both")
        alone.append(flash_by_section(_Library(tmp_path / str(i)))["code"])
        for name, n in _weak_sizes(src, tmp_path).items():
            weak[name] = max(weak.get(name, 0), n)
    # both kernels have 8-bit outputs: qmcu_requant8, the general paths it goes on to and the
    # 64-bit fallback are called, the 4- and 2-bit output stages are defined in every file but
    # never called
    assert {"qmcu_requant8", "qmcu_rq_channel_n32", "qmcu_requant4"} <= set(weak)
    called = (weak["qmcu_requant8"] + weak["qmcu_rq_channel_n32"] + weak["qmcu_requant8_px"]
              + weak["qmcu_requant8_gen"])
    both = flash_by_section(_Library(tmp_path / "both"))["code"]
    assert both == sum(alone) - called, (alone, both, weak)
