"""``spixel report STORE --out report.html`` (or ``--format md``): parse, call :mod:`spixel.experiments.report`,
print where the file went."""

from __future__ import annotations

import argparse


def cmd_report(args: argparse.Namespace) -> int:
    from ..experiments.report import write_report

    fmt = args.format or ("md" if args.out and str(args.out).lower().endswith(".md") else "html")
    out = args.out or f"report.{fmt}"
    runs = [r for part in (args.run or []) for r in part.split(",") if r.strip()]
    path = write_report(
        args.store,
        out,
        fmt=fmt,
        runs=[r.strip() for r in runs] or None,
        cache_maps=args.cache_maps,
        gallery_metric=args.gallery_metric,
        gallery_k=args.gallery_k,
        seed=args.seed,
        n_boot=args.bootstrap,
    )
    print(f"spixel: wrote {path} ({fmt})")
    return 0
