"""``explorer fusion``: the DRAM traffic and energy fusion saves, per fused kernel."""

from __future__ import annotations

import pandas as pd

from explorer.cli.arguments import calibration_arg, model_args


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    f = sub.add_parser("fusion", help="memory traffic and energy that fusion saves, per fused kernel")
    model_args(f)
    f.add_argument("--target", default="cpu", help="target name or .toml file (default: cpu)")
    f.add_argument("--strategy", default="fused", help="the fused strategy to compare with its unfused twin")
    f.add_argument("--top", type=int, default=0, help="show only the N kernels that save most")
    f.add_argument("--csv", help="also write the per-kernel table to this CSV file")
    f.add_argument("--out", help="results store directory to reuse between runs")
    calibration_arg(f)
    f.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from explorer.core.units import fmt_bytes, fmt_j
    from explorer.model.arguments import parse_input_shapes, parse_input_values
    from explorer.sweep.fusion_report import fusion_report

    table, tot = fusion_report(args.model, target=args.target, strategy=args.strategy, out=args.out,
                               input_shapes=parse_input_shapes(args.input_shape), progress=not args.quiet,
                               input_values=parse_input_values(args.input_value), calibration=args.calibration)
    levels = [c[:-len("_bytes")] for c in tot["levels"]]
    if len(table):
        shown = table.sort_values("energy_saved_j", ascending=False)
        if args.top:
            shown = shown.head(args.top)
        print(pd.DataFrame({
            "fused kernel": shown["kernel"], "ops": shown["ops"], "tensors kept on chip": shown["eliminated_tensors"],
            "their size": shown["eliminated_bytes"].map(fmt_bytes),
            "DRAM unfused": shown["dram_bytes_unfused"].map(fmt_bytes),
            "DRAM fused": shown["dram_bytes_fused"].map(fmt_bytes),
            **{f"{lvl} saved": shown[f"{lvl}_bytes_saved"].map(fmt_bytes) for lvl in levels},
            "energy saved": shown["energy_saved_j"].map(fmt_j),
        }).to_string(index=False))
    else:
        print("no kernel was fused")
    saved_b = tot["dram_bytes_unfused"] - tot["dram_bytes_fused"]
    saved_j = tot["energy_unfused_j"] - tot["energy_fused_j"]
    print(f"\n{tot['model']} on {tot['target']}: {tot['unfused']} -> {tot['fused']}: kernels {tot['kernels_unfused']} -> "
          f"{tot['kernels_fused']}, DRAM {fmt_bytes(tot['dram_bytes_unfused'])} -> {fmt_bytes(tot['dram_bytes_fused'])} "
          f"(saved {fmt_bytes(saved_b)}, {saved_b / tot['dram_bytes_unfused'] * 100:.1f}%), energy "
          f"{fmt_j(tot['energy_unfused_j'])} -> {fmt_j(tot['energy_fused_j'])} (saved {fmt_j(saved_j)}, "
          f"{saved_j / tot['energy_unfused_j'] * 100:.1f}%)")
    print("traffic per level, unfused -> fused: " + ", ".join(
        f"{lvl} {fmt_bytes(tot['level_bytes_unfused'][col])} -> {fmt_bytes(tot['level_bytes_fused'][col])}"
        for lvl, col in zip(levels, tot["levels"])))
    if args.csv:
        from pathlib import Path

        from explorer.reports.writer import write_csv

        write_csv(table, Path(args.csv))
        print(f"wrote {args.csv}")
    return 0
