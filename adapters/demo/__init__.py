"""``accord demo``: a deterministic, realistic synthetic data set (see ``story`` and ``runner``)."""

from adapters.demo.runner import DemoError, DemoOptions, DemoSummary, run_demo

__all__ = ["DemoError", "DemoOptions", "DemoSummary", "run_demo"]
