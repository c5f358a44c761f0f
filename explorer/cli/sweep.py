"""``explorer sweep``: compile a model many ways and score each variant's energy."""

from __future__ import annotations

import os
import sys

import pandas as pd

from explorer.cli.arguments import batches, calibration_arg, devices_arg, model_args, positive_int, with_devices
from explorer.model.phases import KV_CACHE_DTYPES
from explorer.scoring.rows import PROBLEM_KINDS


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    s = sub.add_parser("sweep", help="compile a model many ways and score each variant's energy")
    model_args(s)
    s.add_argument("--targets", default="cpu", help="comma-separated target names or .toml files (default: cpu)")
    s.add_argument("--strategies", default="all", help="comma-separated strategy names, or 'all' (default)")
    s.add_argument("--out", help="directory for variants.csv, kernels.csv, report.md and the results store")
    s.add_argument("--no-check", action="store_true", help="do not run CPU builds against onnxruntime")
    s.add_argument("--no-build", action="store_true", help="analyse only; generate no code")
    s.add_argument("--jobs", type=positive_int, metavar="N",
                   help="worker processes compiling at once (default: as many as the cores and memory allow)")
    s.add_argument("--variant-timeout", type=float, metavar="S",
                   help="seconds one variant may compile before its worker is stopped (default: no limit)")
    s.add_argument("--worker-memory", metavar="SIZE",
                   help="each compile worker's memory budget (8G, 500M); a variant that outgrows it is a failed row "
                        "(default: nine tenths of the available memory over --jobs)")
    s.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where variants compile: local worker processes (default) or a Ray cluster "
                        "(pip install -e '.[ray]')")
    s.add_argument("--address", help="the Ray cluster's address (default: $RAY_ADDRESS, or a local Ray instance)")
    going = s.add_mutually_exclusive_group()
    going.add_argument("--keep-going", dest="strict", action="store_false", default=False,
                       help="record a failed variant as a row and go on (default); exit 1 at the end if any failed")
    going.add_argument("--strict", dest="strict", action="store_true", help="stop at the first failed variant")
    s.add_argument("--max-tensor-bytes", type=positive_int, metavar="B",
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
    s.add_argument("--batch", type=batches, metavar="B1,B2,...",
                   help="sweep every model at each batch (the symbolic first dimension of its inputs), e.g. 1,8,32")
    devices_arg(s)
    s.add_argument("--kv-cache-dtype", choices=list(KV_CACHE_DTYPES), default="auto",
                   help="decoders: the dtype the KV cache is kept in between steps (auto: the model's own; "
                        "float16 as deployments keep it: past inputs and presents in half precision)")
    s.add_argument("--max-accuracy-loss", type=float, metavar="PCT",
                   help="mark variants whose outputs differ from the fp32 reference by more than PCT percent "
                        "(relative L2 error; 1%% is an SQNR of 40 dB)")
    s.set_defaults(func=run)


def failed_variants(variants: pd.DataFrame) -> pd.Series:
    """Which variants make a sweep exit 1: no numbers, an fp32 mismatch with onnxruntime, or (with
    --max-accuracy-loss) a reduced precision over the limit."""
    over = variants["meets_accuracy"].astype(object).eq(False)
    return variants["status_kind"].isin(PROBLEM_KINDS) | over


#: Status kinds a sweep reports on stderr, one line per cause.
REPORTED_KINDS = (*PROBLEM_KINDS, "emulated")


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from explorer.model.arguments import parse_input_shapes, parse_input_values
    from explorer.reports.markdown import variants_table
    from explorer.store.eviction import parse_size
    from explorer.store.lowerings import lowerings_dir
    from explorer.sweep.sweep import run_sweep

    result = run_sweep([with_devices(args.model, args.devices)], targets=args.targets.split(","), strategies=args.strategies, out=args.out,
                       input_shapes=parse_input_shapes(args.input_shape), check=not args.no_check,
                       build=not args.no_build, progress=not args.quiet, max_accuracy_loss=args.max_accuracy_loss,
                       calibration=args.calibration, tuning_records=args.tuning_records, jobs=args.jobs,
                       variant_timeout=args.variant_timeout, backend=args.backend, address=args.address,
                       worker_memory=parse_size(args.worker_memory) if args.worker_memory else None,
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
          f"(in workers: compile {w['compile']:.1f} s, analyse {w['analyse']:.2f} s, nvcc and export "
          f"{w['codegen']:.1f} s), time {p['time']:.1f} s "
          f"(of which running the checks {w['run']:.2f} s), score {p['score']:.2f} s")
    if args.out:
        print(f"wrote {os.path.join(args.out, 'variants.csv')}, kernels.csv, report.md and report.html")
    for _, r in v[v["meets_accuracy"].eq(False)].iterrows():
        print(f"{r['model']} / {r['strategy']} / {r['target']}: accuracy loss {r['accuracy_loss_pct']:.3g}% > "
              f"{args.max_accuracy_loss:g}%", file=sys.stderr)
    return 1 if failed_variants(v).any() else 0
