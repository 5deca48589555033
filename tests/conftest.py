import os
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(TESTS))
sys.path.insert(0, TESTS)

from helpers import REPO, have, requires_dataset, requires_trained, trained  # noqa: E402,F401
