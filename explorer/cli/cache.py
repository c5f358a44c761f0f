"""``explorer cache``: what the cache holds, and evicting the least recently used of it."""

from __future__ import annotations

from explorer.cli.arguments import positive_float


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    c = sub.add_parser("cache", help="the cache's size per folder (info) and evicting its least recently used "
                                     "entries (prune); a cap applies after every sweep")
    verbs = c.add_subparsers(dest="action", required=True)
    verbs.add_parser("info", help="size, entries and oldest and newest use per folder, and the cap")
    p = verbs.add_parser("prune", help="evict least recently used entries (never one a running sweep uses)")
    p.add_argument("--max-size", metavar="SIZE", help="evict until the cache holds at most SIZE (40G, 500M, 0)")
    p.add_argument("--older-than", type=positive_float, metavar="DAYS", help="evict every entry unused for DAYS days")
    c.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from explorer.core.errors import InputError
    from explorer.reports.cache import cache_info_text, pruned_text
    from explorer.store.cache import cache_dir
    from explorer.store.eviction import cache_cap_bytes, entries, parse_size, prune

    if args.action == "info":
        print(cache_info_text(cache_dir(), entries(), cache_cap_bytes()))
        return 0
    if args.max_size is None and args.older_than is None:
        raise InputError("explorer cache prune: give --max-size, --older-than or both")
    max_bytes = parse_size(args.max_size) if args.max_size is not None else None
    done = prune(max_bytes=max_bytes, older_than_s=args.older_than * 86400 if args.older_than is not None else None)
    print(pruned_text(done))
    return 0
