"""The ``explorer`` command. Verbs parse their arguments, call the Python API and print or write.

Exit codes: 0 all is well; 1 some variants of a sweep failed, crashed, timed out, mismatched
onnxruntime (fp32) or broke ``--max-accuracy-loss``; 2 bad input (one line on stderr, no traceback);
130 interrupted (finished variants are kept).
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd


from .phases import KV_CACHE_DTYPES
from .results import PROBLEM_KINDS


def failed_variants(variants: pd.DataFrame) -> pd.Series:
    """Which variants make a sweep exit 1: no numbers, an fp32 mismatch with onnxruntime, or (with
    --max-accuracy-loss) a reduced precision over the limit."""
    over = variants["meets_accuracy"].astype(object).eq(False)
    return variants["status_kind"].isin(PROBLEM_KINDS) | over


#: Status kinds a sweep reports on stderr, one line per cause.
REPORTED_KINDS = (*PROBLEM_KINDS, "emulated")


def _cmd_models(args) -> int:
    import models as zoo

    rows = [{"name": m.name, "inputs": " ".join(f"{n}:{','.join(map(str, s))}" for n, s in m.inputs),
             "published GMAC": "" if m.published_macs is None else f"{m.published_macs / 1e9:.3g}",
             "description": m.description} for m in zoo.list_models()]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _cmd_strategies(args) -> int:
    from .strategies import list_strategies

    print(pd.DataFrame([{"name": s.name, **s.axes()} for s in list_strategies()]).to_string(index=False))
    return 0


def _cmd_targets(args) -> int:
    from cost_models.targets import list_targets, load_target

    rows = []
    for name in list_targets():
        t = load_target(name)
        rows.append({"name": t.name, "compiled as": t.tvm, "dtypes": ",".join(t.dtypes),
                     "memory": " > ".join(m.name for m in t.memory), "description": t.description})
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _cmd_sweep(args) -> int:
    from .loading import parse_input_shapes, parse_input_values
    from .lowerings import lowerings_dir
    from .report import variants_table
    from .sweep import run_sweep

    result = run_sweep([args.model], targets=args.targets.split(","), strategies=args.strategies, out=args.out,
                       input_shapes=parse_input_shapes(args.input_shape), check=not args.no_check,
                       build=not args.no_build, progress=not args.quiet, max_accuracy_loss=args.max_accuracy_loss,
                       calibration=args.calibration, tuning_records=args.tuning_records, jobs=args.jobs,
                       variant_timeout=args.variant_timeout, backend=args.backend, address=args.address,
                       strict=args.strict, max_tensor_bytes=args.max_tensor_bytes,
                       input_values=parse_input_values(args.input_value), inputs=args.inputs,
                       phases=args.phase, batches=args.batch, kv_cache_dtype=args.kv_cache_dtype)
    v = result.variants
    if v["energy_j"].notna().any():
        print(variants_table(v).to_string(index=False))
    problems = v[v["status_kind"].isin(REPORTED_KINDS)]
    for (model, status), group in problems.groupby(["model", "status"], sort=False):  # one line per cause
        r = group.iloc[0]
        where = f"{model} / {r['strategy']} / {r['target']}" if len(group) == 1 else f"{model} ({len(group)} variants)"
        print(f"{where}: {status}", file=sys.stderr)
    print(f"\ncompiled {result.compiled} lowering{'s' if result.compiled != 1 else ''}, {result.cached} read back "
          f"from {'the results store or ' if args.out else ''}the cache ({lowerings_dir()})")
    p, w = result.phases_s, result.worker_s
    print(f"wall {sum(p.values()):.1f} s: prepare {p['prepare']:.1f} s, compile {p['compile']:.1f} s "
          f"(in workers: compile {w['compile']:.1f} s, analyse {w['analyse']:.2f} s), time {p['time']:.1f} s "
          f"(of which running the checks {w['run']:.2f} s), score {p['score']:.2f} s")
    if args.out:
        print(f"wrote {os.path.join(args.out, 'variants.csv')}, kernels.csv, report.md and report.html")
    for _, r in v[v["meets_accuracy"].eq(False)].iterrows():
        print(f"{r['model']} / {r['strategy']} / {r['target']}: accuracy loss {r['accuracy_loss_pct']:.3g}% > "
              f"{args.max_accuracy_loss:g}%", file=sys.stderr)
    return 1 if failed_variants(v).any() else 0


def _cmd_fusion(args) -> int:
    from .fusion_report import fusion_report
    from .loading import parse_input_shapes, parse_input_values
    from .report import _fmt_bytes, _fmt_j

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
            "their size": shown["eliminated_bytes"].map(_fmt_bytes),
            "DRAM unfused": shown["dram_bytes_unfused"].map(_fmt_bytes),
            "DRAM fused": shown["dram_bytes_fused"].map(_fmt_bytes),
            **{f"{lvl} saved": shown[f"{lvl}_bytes_saved"].map(_fmt_bytes) for lvl in levels},
            "energy saved": shown["energy_saved_j"].map(_fmt_j),
        }).to_string(index=False))
    else:
        print("no kernel was fused")
    saved_b = tot["dram_bytes_unfused"] - tot["dram_bytes_fused"]
    saved_j = tot["energy_unfused_j"] - tot["energy_fused_j"]
    print(f"\n{tot['model']} on {tot['target']}: {tot['unfused']} -> {tot['fused']}: kernels {tot['kernels_unfused']} -> "
          f"{tot['kernels_fused']}, DRAM {_fmt_bytes(tot['dram_bytes_unfused'])} -> {_fmt_bytes(tot['dram_bytes_fused'])} "
          f"(saved {_fmt_bytes(saved_b)}, {saved_b / tot['dram_bytes_unfused'] * 100:.1f}%), energy "
          f"{_fmt_j(tot['energy_unfused_j'])} -> {_fmt_j(tot['energy_fused_j'])} (saved {_fmt_j(saved_j)}, "
          f"{saved_j / tot['energy_unfused_j'] * 100:.1f}%)")
    print("traffic per level, unfused -> fused: " + ", ".join(
        f"{lvl} {_fmt_bytes(tot['level_bytes_unfused'][col])} -> {_fmt_bytes(tot['level_bytes_fused'][col])}"
        for lvl, col in zip(levels, tot["levels"])))
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


def _cmd_tune(args) -> int:
    from .loading import parse_input_shapes, parse_input_values
    from .tune import tune_model

    stats = tune_model(args.model, strategy=args.strategy, trials=args.trials, records=args.tuning_records,
                       input_shapes=parse_input_shapes(args.input_shape), progress=not args.quiet,
                       input_values=parse_input_values(args.input_value), calibration=args.calibration)
    rate = f" in {stats.seconds:.0f} s, {stats.trials_per_minute:.1f} trials/min" if stats.trials else ""
    print(f"{args.model}: {stats.tasks} kernels, {stats.tuned} tuned now ({stats.trials} trials{rate}), "
          f"{stats.reused} already tuned to this budget")
    return 0


def _fmt_si(value: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _cmd_run(args) -> int:
    import json

    from .deploy import run_variant
    from .loading import parse_input_shapes, parse_input_values

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    r = run_variant(args.model, strategy=args.strategy, target=args.target, repeat=args.repeat, mcpu=args.mcpu,
                    input_shapes=parse_input_shapes(args.input_shape), cached_only=args.cached_only,
                    progress=progress, input_values=parse_input_values(args.input_value), inputs=args.inputs,
                    calibration=args.calibration)
    if args.json:
        print(json.dumps({k: r[k] for k in RUN_JSON_KEYS}))
        return 0
    print(f"{r['model']} / {r['strategy']} on {r['target']} (mcpu {r['mcpu']}), "
          f"{'cached build' if r['build_cached'] else 'built now'}: {r['repeat']} run{'s' if r['repeat'] > 1 else ''} "
          f"with {r['threads']} thread{'s' if r['threads'] > 1 else ''}")
    print(f"latency: median {r['latency_median_ms']:.3f} ms, min {r['latency_min_ms']:.3f} ms, "
          f"max {r['latency_max_ms']:.3f} ms")
    if r["predicted_energy_j"] is None:
        print("predicted: not cached for the current cost model (run without --cached-only)")
    else:
        print(f"predicted: energy {_fmt_si(r['predicted_energy_j'], 'J')}, DRAM {_fmt_si(r['predicted_dram_bytes'], 'B')}, "
              f"latency {_fmt_si(r['predicted_latency_s'], 's')}")
    return 0


#: Keys of ``explorer run --json``.
RUN_JSON_KEYS = ("model", "strategy", "target", "mcpu", "repeat", "latency_ms", "latency_median_ms", "latency_min_ms",
                 "latency_max_ms", "predicted_dram_bytes", "predicted_energy_j", "predicted_latency_s",
                 "build_cached", "library", "threads")


def _cmd_best(args) -> int:
    from .best import Limits, objective_text
    from .export import export_best
    from .loading import parse_input_shapes, parse_input_values

    if args.max_latency_ms is not None and args.max_latency_ms <= 0:
        raise ValueError(f"--max-latency-ms must be positive, got {args.max_latency_ms:g}")
    if args.max_accuracy_loss < 0:
        raise ValueError(f"--max-accuracy-loss must not be negative, got {args.max_accuracy_loss:g}")
    limits = Limits(None if args.max_latency_ms is None else args.max_latency_ms / 1e3, args.max_accuracy_loss)
    done = export_best(args.model, target=args.target, objective=args.objective, out=args.out, limits=limits,
                       run=args.from_run, strategies=args.strategies, portable=args.portable, progress=not args.quiet,
                       input_shapes=parse_input_shapes(args.input_shape),
                       input_values=parse_input_values(args.input_value), calibration=args.calibration,
                       inputs=args.inputs)
    m = done.manifest
    shown = done.candidates[["strategy", "energy_j", "latency_used_s", "accuracy_loss_pct", "ineligible_because"]]
    print(shown.rename(columns={"latency_used_s": "latency_s", "ineligible_because": "not chosen because"})
          .to_string(index=False))
    value = float(done.candidates.iloc[0]["objective_value"])
    print(f"\nbest by {m.objective}: {m.strategy['name']} ({objective_text(m.objective, value)}); accuracy loss "
          f"{'n/a' if m.accuracy_loss_pct is None else f'{m.accuracy_loss_pct:.3g}%'} "
          f"(limit {m.max_accuracy_loss_pct:g}%)")
    inputs = " ".join(f"--input {i['name']}={done.out}/inputs/{i['name']}.npy" for i in m.inputs)
    print(f"exported to {done.out}/ (model.so for mcpu {m.target['mcpu']}, manifest.json, run.py)\n"
          f"run it: python {done.out}/run.py {inputs} --output out.npz")
    return 0


def _cmd_compare(args) -> int:
    from pathlib import Path

    from .compare import compare_html, compare_runs, compare_text

    c = compare_runs(args.run_a, args.run_b, args.min_change / 100)
    print(compare_text(c, args.limit))
    if args.html:
        Path(args.html).write_text(compare_html(c))
        print(f"\nwrote {args.html}")
    return 0


def _cmd_project(args) -> int:
    from pathlib import Path

    from .project import project, projection_json, projection_markdown, projection_text
    from .cache import write_atomic

    names = ("pue", "wue_l_per_kwh", "electricity_water_l_per_kwh", "grid_g_co2_per_kwh", "usd_per_kwh", "utilization")
    p = project(args.run, args.requests_per_day, args.tokens_per_request, **{n: getattr(args, n) for n in names})
    p.table.to_csv(Path(args.run) / "project.csv", index=False)
    write_atomic(Path(args.run) / "project.md", projection_markdown(p))
    print(projection_json(p) if args.json else projection_text(p) + f"\n\nwrote {args.run}/project.csv and project.md")
    return 0


def _batches(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"every batch must be at least 1, got {text!r}")
    return list(dict.fromkeys(values))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cmd_doctor(args) -> int:
    import dataclasses
    import json

    from .doctor import diagnose, report_text

    report = diagnose()
    print(json.dumps(dataclasses.asdict(report)) if args.json else report_text(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``explorer`` command."""
    from .compare import DEFAULT_MIN_CHANGE

    p = argparse.ArgumentParser(prog="explorer", description="Energy explorer for deep-learning compilation on Apache TVM.")
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("models", help="list the built-in model zoo").set_defaults(func=_cmd_models)
    sub.add_parser("strategies", help="list the registered compilation strategies").set_defaults(func=_cmd_strategies)
    sub.add_parser("targets", help="list the shipped hardware targets").set_defaults(func=_cmd_targets)
    d = sub.add_parser("doctor", help="what this machine can do: versions, CPU, threads, code generators, tools, "
                                      "and each target checked by sweeping a one-kernel model")
    d.add_argument("--json", action="store_true", help="one JSON object instead of text")
    d.set_defaults(func=_cmd_doctor)

    def model_args(sp):
        sp.add_argument("model", help="a zoo model name (see `explorer models`) or the path of an .onnx file")
        sp.add_argument("--input-shape", action="append", metavar="NAME:D1,D2,...",
                        help="static shape of an input (repeatable); a symbolic batch dimension defaults to 1")
        sp.add_argument("--input-value", action="append", metavar="NAME=VALUE",
                        help="freeze an input to a constant (repeatable), e.g. sr=16000: what depends on it is "
                             "folded, and an If on it keeps one branch")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")

    def calibration_arg(sp):
        sp.add_argument("--calibration", metavar="DIR",
                        help="int8 calibration inputs: .npy files, one sample each (a folder per input for models "
                             "with several); default: 4 seeded random samples")

    s = sub.add_parser("sweep", help="compile a model many ways and score each variant's energy")
    model_args(s)
    s.add_argument("--targets", default="cpu", help="comma-separated target names or .toml files (default: cpu)")
    s.add_argument("--strategies", default="all", help="comma-separated strategy names, or 'all' (default)")
    s.add_argument("--out", help="directory for variants.csv, kernels.csv, report.md and the results store")
    s.add_argument("--no-check", action="store_true", help="do not run CPU builds against onnxruntime")
    s.add_argument("--no-build", action="store_true", help="analyse only; generate no code")
    s.add_argument("--jobs", type=_positive_int, metavar="N",
                   help="worker processes compiling at once (default: as many as the cores and memory allow)")
    s.add_argument("--variant-timeout", type=float, metavar="S",
                   help="seconds one variant may compile before its worker is stopped (default: no limit)")
    s.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where variants compile: local worker processes (default) or a Ray cluster "
                        "(pip install -e '.[ray]')")
    s.add_argument("--address", help="the Ray cluster's address (default: $RAY_ADDRESS, or a local Ray instance)")
    going = s.add_mutually_exclusive_group()
    going.add_argument("--keep-going", dest="strict", action="store_false", default=False,
                       help="record a failed variant as a row and go on (default); exit 1 at the end if any failed")
    going.add_argument("--strict", dest="strict", action="store_true", help="stop at the first failed variant")
    s.add_argument("--max-tensor-bytes", type=_positive_int, metavar="B",
                   help="refuse a model with a tensor larger than this (default: a quarter of this machine's memory)")
    s.add_argument("--tuning-records", metavar="DIR",
                   help="MetaSchedule records for tuned strategies (read and extended; default: the cache)")
    s.add_argument("--inputs", metavar="DIR",
                   help="real inputs: .npy files, one sample each (a folder per input for models with several); "
                        "the first is the check input, all calibrate int8 (default: seeded samples)")
    calibration_arg(s)
    s.add_argument("--phase", metavar="PHASES",
                   help="decoders: comma-separated phases, prefill:P (a prompt of P tokens, no cache) and decode:L "
                        "(one token against a cache of L), each swept as its own model, e.g. prefill:128,decode:128")
    s.add_argument("--batch", type=_batches, metavar="B1,B2,...",
                   help="sweep every model at each batch (the symbolic first dimension of its inputs), e.g. 1,8,32")
    s.add_argument("--kv-cache-dtype", choices=list(KV_CACHE_DTYPES), default="auto",
                   help="decoders: the dtype the KV cache is kept in between steps (auto: the model's own; "
                        "float16 as deployments keep it: past inputs and presents in half precision)")
    s.add_argument("--max-accuracy-loss", type=float, metavar="PCT",
                   help="mark variants whose outputs differ from the fp32 reference by more than PCT percent "
                        "(relative L2 error; 1%% is an SQNR of 40 dB)")
    s.set_defaults(func=_cmd_sweep)

    f = sub.add_parser("fusion", help="memory traffic and energy that fusion saves, per fused kernel")
    model_args(f)
    f.add_argument("--target", default="cpu", help="target name or .toml file (default: cpu)")
    f.add_argument("--strategy", default="fused", help="the fused strategy to compare with its unfused twin")
    f.add_argument("--top", type=int, default=0, help="show only the N kernels that save most")
    f.add_argument("--csv", help="also write the per-kernel table to this CSV file")
    f.add_argument("--out", help="results store directory to reuse between runs")
    calibration_arg(f)
    f.set_defaults(func=_cmd_fusion)

    t = sub.add_parser("tune", help="tune a model's kernels on this CPU with MetaSchedule and keep the records")
    model_args(t)
    t.add_argument("--strategy", default="fused-tuned", help="a tuned strategy (default: fused-tuned)")
    t.add_argument("--trials", type=int, help="trial budget across the model (default: the strategy's); each kernel "
                   "gets trials // kernels, counting the candidates already in the records")
    t.add_argument("--tuning-records", metavar="DIR", help="records directory (default: one per target in the cache)")
    calibration_arg(t)
    t.set_defaults(func=_cmd_tune)

    b = sub.add_parser("best", help="choose the best variant under latency and accuracy limits and export its build")
    model_args(b)
    b.add_argument("--target", default="cpu", help="a CPU target that runs here (default: cpu)")
    b.add_argument("--objective", choices=("energy", "latency", "edp"), default="energy",
                   help="what to minimise: modelled energy, latency (measured where measured), or their product "
                        "(default: energy)")
    b.add_argument("--max-latency-ms", type=float, metavar="MS", help="latency limit per inference")
    b.add_argument("--max-accuracy-loss", type=float, default=1.0, metavar="PCT",
                   help="a reduced-precision build is chosen only within this relative L2 error of its outputs "
                        "against fp32, in percent (default: 1)")
    b.add_argument("--from", dest="from_run", metavar="RUN",
                   help="choose among the variants of this sweep's --out directory (read from its store) "
                        "instead of sweeping now")
    b.add_argument("--strategies", default="all", help="strategies to sweep without --from (default: all untuned)")
    b.add_argument("--portable", action="store_true", help="compile for generic x86-64 (runs on any x86 machine) "
                                                           "instead of this host's CPU")
    b.add_argument("--inputs", metavar="DIR", help="real inputs, as for sweep: the first is the check input")
    calibration_arg(b)
    b.add_argument("-o", "--out", required=True, metavar="DIR", help="directory to export the build into")
    b.set_defaults(func=_cmd_best)

    c = sub.add_parser("compare", help="what changed between two sweeps, per variant and per kernel")
    c.add_argument("run_a", metavar="RUN_A", help="a sweep's --out directory")
    c.add_argument("run_b", metavar="RUN_B", help="another sweep's --out directory")
    c.add_argument("--min-change", type=float, default=100 * DEFAULT_MIN_CHANGE, metavar="PCT",
                   help=f"list a figure's change only from this many percent (default: {100 * DEFAULT_MIN_CHANGE:g}; "
                        "re-timing alone moves measured latency by more)")
    c.add_argument("--limit", type=_positive_int, default=20, help="kernel changes printed (default: 20; "
                                                                    "compare.html has all)")
    c.add_argument("--html", default="compare.html", metavar="FILE",
                   help="also write the comparison here (default: compare.html; '' for none)")
    c.set_defaults(func=_cmd_compare)

    pr = sub.add_parser("project", help="what serving each variant of a sweep costs a data centre per day: "
                                        "kWh, litres of water, kg CO2 and dollars")
    pr.add_argument("run", metavar="RUN", help="a sweep's --out directory")
    pr.add_argument("--requests-per-day", type=float, required=True, metavar="N", help="requests served a day")
    pr.add_argument("--tokens-per-request", type=int, metavar="T",
                    help="decoders: tokens a request generates after its prompt (its prefill plus T decode steps)")
    for flag, name, what in (("--pue", "pue", "power usage effectiveness"),
                             ("--wue", "wue_l_per_kwh", "on-site water, litres per kWh of IT energy"),
                             ("--water-l-per-kwh-electricity", "electricity_water_l_per_kwh",
                              "off-site water of the electricity, litres per kWh generated (0: leave it out)"),
                             ("--grid-g-co2-per-kwh", "grid_g_co2_per_kwh", "grid carbon intensity"),
                             ("--usd-per-kwh", "usd_per_kwh", "electricity price"),
                             ("--utilization", "utilization", "share of the powered time the hardware is busy")):
        pr.add_argument(flag, dest=name, type=float, help=f"{what} (default: cited, printed with its source)")
    pr.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    pr.set_defaults(func=_cmd_project)

    r = sub.add_parser("run", help="build one variant for this CPU (cached) and time inferences")
    model_args(r)
    r.add_argument("--strategy", default="fused", help="strategy name (default: fused)")
    r.add_argument("--target", default="cpu", help="an llvm target that runs here, for the predicted figures (default: cpu)")
    r.add_argument("--repeat", type=int, default=10, help="number of timed inferences (default: 10)")
    r.add_argument("--mcpu", help="LLVM CPU to build for (default: this host's CPU)")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    r.add_argument("--cached-only", action="store_true",
                   help="never compile: fail when the build is not in the cache (predicted figures are "
                        "omitted when only they are missing)")
    r.add_argument("--inputs", metavar="DIR",
                   help="real inputs: .npy files (a folder per input for models with several); the first sample "
                        "is timed, all calibrate int8 (default: a seeded sample)")
    calibration_arg(r)
    r.set_defaults(func=_cmd_run)

    ms = sub.add_parser("measure", help="build variants with a runtime-only runner into a bundle for the machine "
                                        "that has the target's hardware (a GPU); --run measures them here")
    ms.add_argument("source", metavar="RUN|MODEL", help="a sweep's --out directory (its variants on --target) or a model; "
                                                         "several separated by commas")
    ms.add_argument("--target", default="gpu", help="a cuda or llvm target name or .toml file (default: gpu)")
    ms.add_argument("--strategies", help="comma-separated strategies (default: a sweep's all, a model's 'all')")
    ms.add_argument("-o", "--out", required=True, metavar="DIR", help="the bundle's directory")
    ms.add_argument("--no-micro", action="store_true", help="leave out the bandwidth and FMA microbenchmarks")
    ms.add_argument("--inline-limit-mb", type=float, default=4.0, metavar="MB",
                    help="weights larger than this are regenerated by the runner instead of shipped (default 4)")
    ms.add_argument("--run", action="store_true", help="also run the bundle here (needs a GPU, or --device cpu)")
    ms.add_argument("--device", choices=("cuda", "cpu"), help="with --run: where to run (default: the target's)")
    ms.add_argument("--quiet", action="store_true", help="no progress")
    ms.set_defaults(func=_cmd_measure)

    ca = sub.add_parser("calibrate", help="fit a target's energy figures to a bundle's measurements and write a "
                                          "calibrated copy of its target file (the cited file is never changed)")
    ca.add_argument("results", metavar="RESULTS", help="the runner's results.json")
    ca.add_argument("--bundle", metavar="DIR", help="the bundle measured (default: the folder of RESULTS)")
    ca.add_argument("--target", help="the target whose figures are fitted (default: the bundle's)")
    ca.add_argument("-o", "--out", required=True, metavar="FILE", help="the calibrated target file to write")
    ca.add_argument("--report", metavar="DIR", help="also write measure_variants.csv, measure_kernels.csv, measure.html")
    ca.add_argument("--ncu", metavar="DIR", help="with --report: ncu CSVs (<variant>.csv) and their call orders")
    ca.set_defaults(func=_cmd_calibrate)
    return p


def _cmd_measure(args) -> int:
    from .errors import ExplorerError
    from .measure import build_bundle, run_bundle
    from .measure_report import measure_report

    if args.inline_limit_mb < 0:
        raise ExplorerError(f"--inline-limit-mb must not be negative, got {args.inline_limit_mb:g}")
    b = build_bundle(args.source, target=args.target, strategies=args.strategies, out=args.out,
                     micro=False if args.no_micro else None, inline_limit_bytes=int(args.inline_limit_mb * 2**20),
                     progress=not args.quiet)
    print(b.variants.to_string(index=False))
    for note in b.notes:
        print(f"note: {note}")
    print(f"\nwrote {b.out}/ ({b.size_bytes / 2**20:.1f} MiB, {len(b.variants)} variants, {b.compiled} compiled now); "
          f"run it where the hardware is: python {b.out}/measure_runner.py --device {b.manifest['device']}")
    if args.run:
        results = run_bundle(b.out, device=args.device, progress=not args.quiet)
        r = measure_report(b.out, results, out=b.out)
        print(r.variants[["id", "status", "predicted_energy_j", "measured_energy_j", "predicted_latency_s",
                          "measured_latency_s"]].to_string(index=False))
        print(f"\nSpearman (latency): {r.summary['spearman_latency']:.3g}; wrote {b.out}/results.json, measure.html")
    return 0


def _cmd_calibrate(args) -> int:
    from pathlib import Path

    from .gpu_calibration import calibrate_target
    from .measure_report import measure_report

    bundle = args.bundle or str(Path(args.results).resolve().parent)
    cal = calibrate_target(bundle, args.results, target=args.target, out=args.out)
    shown = cal.figures[cal.figures["fitted_here"]][["figure", "cited", "low", "high", "fitted", "stderr_range"]]
    print(shown.to_string(index=False))
    s = cal.summary
    print(f"\nmean absolute energy error: {s['mean_abs_error_pct_cited']:.3g}% cited, "
          f"{s['mean_abs_error_pct_lomo']:.3g}% calibrated (leave-one-model-out, {s['models']} models, "
          f"{s['variants']} variants); Spearman {s['spearman_cited']:.3g} -> {s['spearman_lomo']:.3g}")
    if args.report:
        measure_report(bundle, args.results, out=args.report, ncu=args.ncu, calibration=cal)
    print(f"wrote {args.out}" + (f" and {args.report}/" if args.report else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a verb; user errors print one line and exit non-zero, never a traceback."""
    from cost_models.targets import TargetError

    from .errors import ExplorerError, SweepStopped

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SweepStopped as err:
        print(f"explorer: stopped at the first failure (--strict): {err}", file=sys.stderr)
        return 1
    except (ExplorerError, TargetError, KeyError, ValueError, RuntimeError, FileNotFoundError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"explorer: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explorer: interrupted; finished variants and measured tuning candidates are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
