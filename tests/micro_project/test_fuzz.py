"""The firmware's frame parser and server under AddressSanitizer + UBSan, fed random, valid and
mutated frames by a seeded generator (the harness also checks the parser's invariants and that
every reply is one well-formed frame)."""
import pytest

from micro_project import fuzz

from mp_support import requires_gcc

pytestmark = requires_gcc


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return fuzz.build(tmp_path_factory.mktemp("fuzz"))


def test_short_fuzz_pass(harness):
    res = fuzz.run(harness, frames=30_000, seed=3, timeout=300)
    assert res.ok, res.output[-3000:]
    c = res.counts()
    assert c["fed"] == 30_000
    assert c["intact"] > 3_000 and c["replies"] >= c["intact"]    # real commands were served


def test_harness_catches_out_of_bounds(tmp_path):
    """The sanitizers are really on: an out-of-bounds write in the harness build is fatal."""
    import subprocess
    src = tmp_path / "oob.c"
    src.write_text("#include <stdlib.h>\nint main(int c, char **v){ volatile char *p = malloc(4);"
                   " p[c + 3] = 1; return p[0]; }\n")
    exe = tmp_path / "oob"
    subprocess.run(["gcc", *fuzz.SANITIZE_FLAGS, str(src), "-o", str(exe)], check=True)
    p = subprocess.run([str(exe)], capture_output=True, text=True)
    assert p.returncode != 0 and "heap-buffer-overflow" in p.stderr


@pytest.mark.parametrize("max_payload", [64, 65535])
def test_harness_builds_and_runs_at_the_payload_limits(tmp_path, max_payload):
    res = fuzz.run(fuzz.build(tmp_path, max_payload=max_payload), frames=5_000, seed=5,
                   timeout=300)
    assert res.ok, res.output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("max_payload", [64, 512, 65535])
def test_one_million_frames(tmp_path, max_payload):
    harness = fuzz.build(tmp_path, max_payload=max_payload)
    res = fuzz.run(harness, frames=1_000_000, seed=2024, timeout=3000)
    assert res.ok, res.output[-3000:]
    assert res.counts()["fed"] == 1_000_000
    print(f"\nmax_payload {max_payload}: " + res.output.strip())
