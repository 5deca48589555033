"""Acceptance: `quantmcu search` on an ImageNet-size network (224×224×3, 52 convolutions,
explicit pads, BatchNorm outside any nn.Sequential) with 64 calibration images imports, plans
and searches within 4 GB resident (the search streams its calibration and bounds its caches).
Peak RSS is that of the search process (getrusage of the waited-for child)."""
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RSS_LIMIT_BYTES = 4 << 30

pytestmark = pytest.mark.slow


def test_imagenet_size_search_fits_4gb(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "images.npz"
    np.savez(data, images=rng.integers(0, 256, (64, 224, 224, 3), dtype=np.uint8),
             labels=rng.integers(0, 1000, 64))
    cmd = [sys.executable, "-m", "tvm_quantmcu.cli", "search",
           "--model", f"{os.path.join(HERE, 'bignet.py')}:make", "--data", str(data),
           "--sram-kb", "256", "--json", "--no-progress", "--out", str(tmp_path / "p.json")]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=tmp_path)
    seconds = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"\nImageNet-size search: peak RSS {peak / 2**30:.2f} GiB, {seconds:.0f} s wall, "
          f"plan {res['plan']}, top-1 {res['top1']}")
    assert res["images"] == 64 and res["vdpc_calibration"]["calibration_images"] == 64
    assert peak < RSS_LIMIT_BYTES, f"peak RSS {peak / 2**30:.2f} GiB"
