"""Energy explorer for deep-learning compilation on Apache TVM.

    import explorer
    df = explorer.sweep("resnet18", targets=["cpu", "npu"], strategies="all")
    timing = explorer.run_variant("resnet18", strategy="fused", repeat=10)  # build once, time on this CPU
    build = explorer.export_best("resnet18", target="cpu", objective="energy", out="build")  # deploy
    changes = explorer.compare_runs("runs/a", "runs/b")  # .variants and .kernels that changed

Everything the ``explorer`` command does is available here and returns pandas DataFrames.
"""

from explorer.core.errors import ExplorerError  # noqa: E402
from explorer.core.strategies import Strategy, get_strategy, list_strategies, register  # noqa: E402
from explorer.core.variant import Status, StatusKind  # noqa: E402
from explorer.core.version import __version__  # noqa: E402
from explorer.deploy.best import Limits  # noqa: E402
from explorer.deploy.export import export_best  # noqa: E402
from explorer.deploy.run import run_variant  # noqa: E402
from explorer.reports.compare import compare_runs  # noqa: E402
from explorer.sweep.fusion_report import fusion_report  # noqa: E402
from explorer.sweep.sweep import run_sweep, sweep  # noqa: E402

__all__ = ["ExplorerError", "Strategy", "get_strategy", "list_strategies", "register", "run_sweep", "sweep",
           "fusion_report", "run_variant", "Status", "StatusKind", "Limits", "export_best", "compare_runs",
           "__version__"]
