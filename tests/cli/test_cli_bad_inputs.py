"""Every bad input a user can give, through the CLI: exit status 2, one line naming the thing
and what to do, no traceback, and --out absent or exactly as it was."""
import json
import math
import shutil
from pathlib import Path

import pytest

from helpers import REPO, requires_dataset, requires_trained

POLICY = Path(REPO) / "tvm_quantmcu" / "models" / "policies" / "mbv2-fmnist.quantmcu.json"


def _policy(mutate):
    d = json.loads(POLICY.read_text())
    return mutate(d)


def _set(path, value):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return d
    return f


def _first(d, key):
    return next(iter(d[key]))


def _map_bits(value):
    return lambda d: _set(["bits_low", _first(d, "bits_low")], value)(d)


def _range(value):
    return lambda d: _set(["ranges8", _first(d, "ranges8")], value)(d)


# name → (policy JSON or a mutation of the shipped one, text the message must contain)
POLICY_CASES = {
    "bits 3": (_map_bits(3), "bit widths are 2, 4, 8"),
    "bits as a string": (_map_bits("4"), "bit widths are"),
    "grid as a string": (_set(["grid"], "2x2"), "grid must be"),
    "grid of zeros": (_set(["grid"], [0, 0]), "grid must be"),
    "split index past the network": (_set(["split_index"], 999), "split_index 999"),
    "NaN range": (_range([float("nan"), 1.0]), "finite numbers"),
    "inverted range": (_range([2.0, -1.0]), "inverted"),
    "threshold as a string": (_set(["threshold"], "0.5"), "threshold must be"),
    "unknown map name": (lambda d: _set(["bits_low", "no_such_map"], 4)(d), "no_such_map"),
    "unknown field": (_set(["colour"], "blue"), "unknown field 'colour'"),
    "top-level list": (lambda d: [], "not a policy"),
    "top-level null": (lambda d: None, "not a policy"),
    "not JSON": ("{ broken", "not JSON"),
}


def _snapshot(d: Path):
    if not d.exists():
        return None
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else None
            for p in sorted(d.rglob("*"))}


def _run_cli(argv, capsys):
    from tvm_quantmcu.cli import main
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _cases(tmp: Path):
    """(id, argv, expected text, --out dir or None)."""
    a_file = tmp / "a_file"
    a_file.write_text("x")
    out = tmp / "out"
    cases = []
    for name, (mutate, text) in POLICY_CASES.items():
        f = tmp / f"policy-{name.replace(' ', '_')}.json"
        if isinstance(mutate, str):
            f.write_text(mutate)
        else:
            f.write_text(json.dumps(_policy(mutate)))
        cases.append((f"policy: {name}", ["deploy", "--policy-file", str(f), "--images", "1",
                                          "--out", str(out), "--no-progress"], text, out))
    garbage_db = tmp / "garbage-db"
    garbage_db.mkdir()
    for n in ("database_workload.json", "database_tuning_record.json"):
        (garbage_db / n).write_text("\x00garbage{[")
    bad_tasks = tmp / "bad-tasks-db"
    bad_tasks.mkdir()
    (bad_tasks / "tasks.json").write_text("[1, 2")
    cases += [
        ("images beyond the test set", ["deploy", "--images", "1000000000", "--out", str(out)],
         "the test set has 10,000 images", out),
        ("no images", ["deploy", "--images", "0", "--out", str(out)], "--images", out),
        ("timeout nan", ["deploy", "--timeout", "nan", "--out", str(out)], "--timeout", out),
        ("out below a file", ["deploy", "--images", "1", "--out", str(a_file / "sub")],
         "is a file", None),
        ("out is a file", ["deploy", "--images", "1", "--out", str(a_file)], "is a file", None),
        ("out in an unwritable place", ["deploy", "--images", "1", "--out",
                                        "/proc/quantmcu-out"], "/proc", None),
        ("out holds other files", ["deploy", "--images", "1", "--out", str(tmp)],
         "holds other files", None),
        ("garbage tuning database", ["deploy", "--images", "1", "--tuning-db", str(garbage_db),
                                     "--out", str(out)], "garbage-db", out),
        ("garbage tasks.json", ["tune", "--db", str(bad_tasks), "--trials", "0",
                                "--no-progress"], "tasks.json", None),
        ("plan budget nan", ["plan", "--sram-kb", "nan"], "--sram-kb nan", None),
        ("plan budget inf", ["plan", "--sram-kb", "inf"], "--sram-kb inf", None),
        ("plan budget negative", ["plan", "--sram-kb", "-3"], "--sram-kb", None),
        ("plot below a file", ["plan", "--sram-kb", "64", "--plot", str(a_file / "p.png")],
         "a_file", None),
    ]
    return cases


@requires_trained("mbv2-fmnist")
@requires_dataset
def test_every_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    failures = []
    cases = _cases(tmp_path)
    earlier = tmp_path / "out"
    for cid, argv, text, out in cases:
        # an earlier deploy's output must survive a failed one untouched
        if out is not None:
            if out.exists():
                shutil.rmtree(out)
            (out / "project").mkdir(parents=True)
            (out / "project" / "project.json").write_text("{}")
            (out / "memory.md").write_text("earlier run\n")
        before = _snapshot(out) if out is not None else None
        rc, stdout, stderr = _run_cli(argv, capsys)
        lines = [l for l in stderr.splitlines() if l.strip()]
        problems = []
        if rc != 2:
            problems.append(f"exit {rc}")
        if len(lines) != 1 or "Traceback" in stderr:
            problems.append(f"stderr is not one line: {stderr[-500:]!r}")
        elif text not in lines[0]:
            problems.append(f"{text!r} not in {lines[0]!r}")
        if out is not None and _snapshot(out) != before:
            problems.append("--out changed")
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        if leftovers:
            problems.append(f"temporary outputs left: {leftovers}")
        if problems:
            failures.append(f"{cid}: {'; '.join(problems)}")
        else:
            print(f"{cid}: {lines[0]}")
    assert not failures, "\n".join(failures)
    assert earlier.exists()
