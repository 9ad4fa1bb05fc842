"""``spixel list``: the registered methods, models, segmenters, metrics, dataset forms and protocols."""

from __future__ import annotations

import argparse
from typing import Any

from .common import segmenters
from .demo import method_summary


def _fmt_default(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _entry_lines(entry: Any, kind: str, params: str, width: int) -> list[str]:
    """``spixel list`` rows of one method or segmenter: name, kind and wrapped parameters, then its summary."""
    import textwrap

    head = f"  {entry.name:<23} {kind:<13} "
    rows = textwrap.wrap(
        params or "-", width=width, initial_indent=head, subsequent_indent=" " * len(head), break_on_hyphens=False
    )
    return rows + textwrap.wrap(method_summary(entry), width=width, initial_indent=" " * 6, subsequent_indent=" " * 6)


def cmd_list(args: argparse.Namespace) -> int:
    import shutil
    import textwrap

    from ..registry import METHODS, MODELS

    width = max(60, min(shutil.get_terminal_size((100, 20)).columns, 120))
    lines: list[str] = []
    if args.what in (None, "methods"):
        lines.append("METHODS  (spixel explain --method NAME --param KEY=VALUE; [stochastic]: seeded by --seed)")
        lines.append(f"  {'name':<23} {'family':<13} default parameters")
        for e in METHODS:
            ps = " ".join(f"{k}={_fmt_default(v)}" for k, v in e.info.get("params", {}).items() if k != "seed")
            if e.info.get("stochastic"):
                ps = (ps + "  [stochastic]").strip()
            lines.extend(_entry_lines(e, e.info.get("family", ""), ps, width))
        lines.append("")
    if args.what in (None, "models"):
        lines.append("MODELS  (spixel explain --model NAME [--weights FILE])")
        lines.append(f"  {'name':<23} {'family':<19} {'input':<7} weights")
        for e in MODELS:
            size = e.info.get("input_size", "")
            lines.append(f"  {e.name:<23} {e.info.get('family', ''):<19} {size!s:<7} {e.info.get('weights', '')}")
        lines.append("")
    if args.what in (None, "segmenters"):
        lines.append(
            "SEGMENTERS  (spixel segment --segmenter NAME --param KEY=VALUE; "
            "spixel explain --regions NAME:KEY=VALUE,...; [stochastic]: seeded by --seed)"
        )
        lines.append(f"  {'name':<23} {'backend':<13} default parameters")
        for e in segmenters():
            ps = " ".join(
                f"{k}={_fmt_default(v)}"
                for k, v in e.info.get("params", {}).items()
                if k != "seed" and k not in e.info.get("needs", ())
            )
            if "seed" in e.info.get("params", {}):
                ps = (ps + "  [stochastic]").strip()
            if e.info.get("needs"):
                ps = (ps + f"  [needs: {', '.join(e.info['needs'])}; used by methods, not the CLI]").strip()
            lines.extend(_entry_lines(e, e.info.get("backend", ""), ps, width))
        lines.append("")
    if args.what in (None, "metrics"):
        from .. import metrics  # noqa: F401  (registration)
        from ..registry import METRICS

        lines.append(
            "METRICS  (spixel evaluate --metric NAME; spixel.evaluate(model, x, explanation, NAME) or "
            "spixel.metrics.NAME; ↑ higher is better, ↓ lower is better; [python only]: not in the CLI)"
        )
        lines.append(f"  {'name':<27} {'category':<13} reference")
        for e in METRICS:
            arrow = "↑" if e.info.get("higher_is_better") else "↓"
            head = f"  {e.name + ' ' + arrow:<27} {e.info.get('category', ''):<13} "
            ref = str(e.info.get("reference", "")) or "-"
            if not e.info.get("scores_explanation"):
                ref = "[python only] " + ref
            lines.extend(textwrap.wrap(ref, width=width, initial_indent=head, subsequent_indent=" " * len(head)))
        lines.append("")
    if args.what in (None, "datasets"):
        from .. import data  # noqa: F401  (registration)
        from ..registry import DATASETS

        lines.append("DATASETS  (spixel run EXPERIMENT --data FORM:ARG[?key=value&...]; spixel evaluate --data ...)")
        lines.append(f"  {'form':<23} {'example':<40} options")
        for e in DATASETS:
            opts = ", ".join(e.info.get("options", ())) or "-"
            lines.append(f"  {e.name:<23} {e.info.get('example', ''):<40} {opts}")
            lines.extend(textwrap.wrap(e.description, width=width, initial_indent=" " * 6, subsequent_indent=" " * 6))
        lines.append("")
    if args.what in (None, "protocols"):
        from .. import experiments  # noqa: F401  (registration)
        from ..registry import PROTOCOLS

        lines.append("PROTOCOLS  (spixel run NAME --data DATASET --store S.db; a paper's table as an experiment)")
        lines.append(f"  {'name':<23} {'paper / table':<22} {'default data':<16} description")
        for e in PROTOCOLS:
            head = f"  {e.name:<23} {e.info.get('source', ''):<22} {e.info.get('data', ''):<16} "
            lines.extend(
                textwrap.wrap(e.description, width=width, initial_indent=head, subsequent_indent=" " * len(head))
            )
        lines.append("")
    print("\n".join(lines).rstrip())
    return 0
