"""``python -m tvm_quantmcu.models.policies``: regenerate the shipped policies."""
from . import main

raise SystemExit(main())
