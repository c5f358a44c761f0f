"""Energy explorer for deep-learning compilation on Apache TVM.

    import explorer
    df = explorer.sweep("resnet18", targets=["cpu", "npu"], strategies="all")

Everything the ``explorer`` command does is available here and returns pandas DataFrames.
"""

__version__ = "0.1.0"

from .errors import ExplorerError  # noqa: E402
from .strategies import Strategy, get_strategy, list_strategies, register  # noqa: E402
from .sweep import run_sweep, sweep  # noqa: E402
from .fusion import fusion_report  # noqa: E402

__all__ = ["ExplorerError", "Strategy", "get_strategy", "list_strategies", "register", "run_sweep", "sweep",
           "fusion_report", "__version__"]
