"""`quantmcu report`: the plan, the policies and their measurements of one model as markdown
with PNG plots (memory per layer, bit widths and outlier rates, the BitOPs/accuracy front)."""
from .build import PNG_FILES, build_report
from .collect import ReportData, collect, from_benchmark, memory_profiles

__all__ = ["PNG_FILES", "build_report", "ReportData", "collect", "from_benchmark",
           "memory_profiles"]
