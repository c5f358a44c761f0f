"""``explorer serve``: what a decoder costs per output token when a server runs it at each batch."""

from __future__ import annotations

from explorer.cli.arguments import batches, devices_arg, positive_int, with_devices
from explorer.model.phases import KV_CACHE_DTYPES

#: The strategies ``serve`` analyses unless told otherwise: the precisions servers run on GPUs.
SERVED_STRATEGIES = "fused-bf16"


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    from explorer.scoring.serving import LM_ARENA_CHAT

    s = sub.add_parser("serve", help="a decoder's energy per output token, inter-token latency and power at each "
                                     "batch a server runs (serving.csv)")
    s.add_argument("model", help="a zoo decoder (explorer models), or a Hugging Face config.json")
    s.add_argument("--target", default="gpu", help="comma-separated target names or .toml files (default: gpu)")
    s.add_argument("--batch", type=batches, default=[8, 64, 256], metavar="B1,B2,...",
                   help="the batches the server runs (vLLM's max_num_seqs; default 8,64,256)")
    s.add_argument("--prompt-tokens", type=positive_int, default=LM_ARENA_CHAT.prompt_tokens, metavar="P",
                   help=f"prompt length (default {LM_ARENA_CHAT.prompt_tokens}: an assumption, see the docs)")
    s.add_argument("--output-tokens", type=positive_int, default=LM_ARENA_CHAT.output_tokens, metavar="O",
                   help=f"tokens each request generates (default {LM_ARENA_CHAT.output_tokens}: the ML.ENERGY "
                        "leaderboard v3's LM-Arena chat mean for Llama-3.1-8B)")
    devices_arg(s)
    s.add_argument("--prefill-batch", type=positive_int, default=1, metavar="N", help="prompts prefilled at a time (default 1)")
    s.add_argument("--strategies", default=SERVED_STRATEGIES, help=f"comma-separated strategies (default {SERVED_STRATEGIES})")
    s.add_argument("--kv-cache-dtype", choices=[k for k in KV_CACHE_DTYPES if k != "auto"], default="float16",
                   help="the dtype the KV cache is kept in (default float16)")
    s.add_argument("--expert-load", metavar="FILE",
                   help="a mixture's measured expert load: per layer (or one line for all), each expert's share of "
                        "the routed tokens (default: uniform routing; see the docs)")
    s.add_argument("--jobs", type=positive_int, metavar="N", help="worker processes compiling at once")
    s.add_argument("--out", help="directory for serving.csv and serving.md")
    s.add_argument("--no-build", action="store_true", help="accepted for symmetry with sweep: serve never builds")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from pathlib import Path

    from explorer.reports.markdown import serving_markdown
    from explorer.reports.writer import spreadsheet_safe
    from explorer.scoring.serving import ServingWorkload
    from explorer.store.cache import write_atomic
    from explorer.sweep.serving import serve

    workload = ServingWorkload(args.prompt_tokens, args.output_tokens, args.prefill_batch)
    table = serve(with_devices(args.model, args.devices), args.target.split(","), args.strategies, args.batch, workload, args.kv_cache_dtype,
                  progress=not args.quiet, jobs=args.jobs, expert_load=args.expert_load)
    text = serving_markdown(table)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "serving.csv", spreadsheet_safe(table).to_csv(index=False))
        write_atomic(out / "serving.md", f"# Serving {args.model}\n\n{text}\n")
        print(f"\nwrote {out / 'serving.csv'} and serving.md")
    return 0 if len(table) else 1
