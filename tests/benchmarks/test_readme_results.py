"""README's results section is generated from benchmarks/results/*.json and must stay current:
the check fails on drift (in the JSON or in the README), ignores JSON it does not know, and
renders the same text whatever the order of the JSON's lists."""
import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

SCRIPT = Path(REPO) / "benchmarks" / "readme_results.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("readme_results", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rr = _load_generator()


def run_check(readme: Path, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--readme", str(readme),
                           "--results", str(results)], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def workdir(tmp_path):
    """A copy of README.md and of the JSON results, to be drifted freely."""
    results = tmp_path / "results"
    results.mkdir()
    for f in rr.RESULTS.glob("*.json"):
        shutil.copy(f, results / f.name)
    readme = tmp_path / "README.md"
    shutil.copy(rr.README, readme)
    return readme, results


def section_of(readme: Path) -> str:
    return rr.split_readme(readme.read_text(), readme)[1]


def test_readme_results_section_is_current():
    """Fails when README's numbers differ from benchmarks/results/*.json; the message is the
    diff, and `python benchmarks/readme_results.py` fixes it."""
    try:
        rr.check()
    except rr.StaleReadmeError as e:
        pytest.fail(str(e))


def test_readme_section_quotes_the_json():
    searches, kernels = rr.load_results(rr.RESULTS)
    assert searches or kernels, "no benchmark JSON recognised in benchmarks/results/"
    section = section_of(rr.README)
    for _, doc in searches:
        for model in doc["models"]:
            assert f"**{model['model']}**" in section
            for r in model["policies"]:
                assert f"| {rr.policy_label(r)} |" in section
                assert f"| {100 * r['top1']:.2f} |" in section
    for _, doc in kernels:
        for layer in doc["layers"]:
            if layer.get("cmsis_nn_instr_per_mac"):
                assert f"| {layer['layer']} |" in section


def test_readme_section_quotes_the_tuning_json():
    tunes = rr.load_all(rr.RESULTS)[3]
    assert tunes, "benchmarks/results/tune.json is missing or not recognised"
    section = section_of(rr.README)
    for _, doc in tunes:
        for r in doc["runs"]:
            assert f"| {r['trials']:,} | {r['new_measurements']:,} |" in section
            assert f"| {r['ratio']:.4f} |" in section
        assert f"×{doc['deploy']['tuned_over_untuned']:.4f}" in section


def test_check_detects_a_drifted_json_number(workdir):
    readme, results = workdir
    assert run_check(readme, results).returncode == 0
    doc = json.loads((results / "search.json").read_text())
    row = doc["models"][0]["policies"][0]
    old = f"{100 * row['top1']:.2f}"
    row["top1"] = round(row["top1"] - 0.0123, 4)
    new = f"{100 * row['top1']:.2f}"
    (results / "search.json").write_text(json.dumps(doc))
    r = run_check(readme, results)
    assert r.returncode == 1
    assert "stale" in r.stderr and "readme_results.py" in r.stderr
    removed = [l for l in r.stderr.splitlines() if l.startswith("-|")]
    added = [l for l in r.stderr.splitlines() if l.startswith("+|")]
    assert any(f"| {old} |" in l for l in removed) and any(f"| {new} |" in l for l in added)
    # regenerating brings the copy back in line, touching only the section
    before, _, after = rr.split_readme(readme.read_text(), readme)
    assert rr.update(readme, results) is True
    assert run_check(readme, results).returncode == 0
    b2, _, a2 = rr.split_readme(readme.read_text(), readme)
    assert (b2, a2) == (before, after)


def test_check_detects_a_hand_edited_readme_number(workdir):
    readme, results = workdir
    text = readme.read_text()
    section = section_of(readme)
    row = next(l for l in section.splitlines() if re.match(r"\| [^-|].* \| [0-9]", l))
    cells = row.split(" | ")
    num = next(i for i, c in enumerate(cells) if re.fullmatch(r"[0-9.,]+", c))
    cells[num] = cells[num] + "1"
    readme.write_text(text.replace(row, " | ".join(cells), 1))
    r = run_check(readme, results)
    assert r.returncode == 1 and f"-{' | '.join(cells)}" in r.stderr


def test_unknown_and_unreadable_json_is_ignored(workdir):
    _, results = workdir
    want = rr.render(results)
    (results / "other.json").write_text(json.dumps({"rows": [{"policy": "int8", "us": 3}]}))
    (results / "list.json").write_text("[1, 2, 3]")
    (results / "broken.json").write_text("{not json")
    (results / "aaa_models_without_policies.json").write_text(json.dumps({"models": [{}]}))
    assert rr.render(results) == want


def test_render_does_not_depend_on_list_order(workdir):
    _, results = workdir
    want = rr.render(results)
    rng = random.Random(0)
    for f in results.glob("*.json"):
        doc = json.loads(f.read_text())
        for key in ("models", "layers"):
            for item in doc.get(key, []):
                rng.shuffle(item.get("policies", []))
                rng.shuffle(item.get("runs", []))
            rng.shuffle(doc.get(key, []))
        f.write_text(json.dumps(doc, indent=3))
    assert rr.render(results) == want


def test_missing_fields_render_as_dashes(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(
        {"models": [{"model": "tiny", "policies": [{"policy": "int8", "top1": 0.5}]}]}))
    (tmp_path / "k.json").write_text(json.dumps(
        {"layers": [{"layer": "pw", "macs": 100, "cmsis_nn_instr_per_mac": 2.0,
                     "runs": [{"schedule": "dsp", "in_bits": 8, "instructions": 300}]}]}))
    out = rr.render(tmp_path)
    assert "| int8 | – | 50.00 | – | – | – | – | – |" in out
    assert "| pw | 100 | – | 3.00 | – | – | – | – | – | – | – | – | 2.0 | 1.50 |" in out


def test_readme_without_markers_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# project\n")
    r = run_check(readme, rr.RESULTS)
    assert r.returncode == 2 and rr.BEGIN in r.stderr and "README.md" in r.stderr
