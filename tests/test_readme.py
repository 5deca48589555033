"""README's prose that quotes code: the reconstructed QuantMCU choices listed under "Honest
limits" must name every SearchParams field with its current default."""
import ast
import dataclasses
import os
import re

from helpers import REPO

from tvm_quantmcu.search import SearchParams


def honest_limits() -> str:
    text = open(os.path.join(REPO, "README.md")).read()
    start = text.index("## Honest limits")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def test_honest_limits_quote_every_search_param_with_its_default():
    quoted = dict(re.findall(r"`(\w+)=([^`]+)`", honest_limits()))
    defaults = {f.name: f.default for f in dataclasses.fields(SearchParams)}
    missing = sorted(set(defaults) - set(quoted))
    assert not missing, f"README 'Honest limits' does not mention SearchParams {missing}"
    wrong = {k: (quoted[k], defaults[k]) for k in defaults
             if ast.literal_eval(quoted[k]) != defaults[k]}
    assert not wrong, f"README quotes stale defaults (README, code): {wrong}"
