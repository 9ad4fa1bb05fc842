"""Helpers every ``spixel`` command shares: argparse types, ``--param`` / ``--regions`` parsing, models and
devices, targets, image arguments (files, folders, ``sample:NAME``), one-line errors and output folders."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..errors import BadImageError, BadParameterError
from ..params import parse_kv, parse_segmenter_spec

#: Image file extensions taken from a folder given as IMAGE.
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


_MODEL_CACHE: dict[tuple[str, str | None, str], Any] = {}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: they become :class:`SpixelError` and exit 2 like every user mistake."""

    def error(self, message: str) -> NoReturn:
        raise BadParameterError(f"{message} (see '{self.prog} --help')")


def _int_at_least(lo: int, expected: str) -> Callable[[str], int]:
    """An argparse type: an integer ``>= lo``; otherwise an error naming ``expected``."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}")
        return v

    return parse


positive_int = _int_at_least(1, "a positive integer")
seed_arg = _int_at_least(0, "an integer >= 0")


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``["n_steps=20", ...]`` → ``{"n_steps": 20, ...}``; malformed items raise :class:`BadParameterError`."""
    out = parse_kv(items, "--param ", "--param n_steps=20")
    if "seed" in out:
        raise BadParameterError("set the seed with --seed N, not --param seed=N")
    return out


def segmenters() -> Any:
    """The segmenter registry, with the segmenters imported (registered)."""
    from .. import segmentation  # noqa: F401  (registration)
    from ..registry import SEGMENTERS

    return SEGMENTERS


def parse_regions(spec: str, seed: int | None = None) -> tuple[str, dict[str, Any]]:
    """``--regions NAME[:KEY=VALUE,...]`` → ``(name, params)``, checked against the segmenter registry (unknown
    names and parameters raise with the valid ones). A segmenter with a ``seed`` parameter gets ``seed`` unless
    the spec sets it."""
    name, params = parse_segmenter_spec(spec, "--regions")
    if seed is not None and "seed" in segmenters().get(name).info.get("params", {}) and "seed" not in params:
        params["seed"] = seed
    return name, params


def parse_methods(spec: str) -> list[Any]:
    """``"a,b"`` → registry entries (unknown names raise with the valid list), duplicates dropped."""
    from ..registry import METHODS

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise BadParameterError("--method needs at least one method name (spixel list methods)")
    return [METHODS.get(n) for n in dict.fromkeys(names)]


def assign_params(entries: Sequence[Any], params: dict[str, Any], kind: str = "method") -> dict[str, dict[str, Any]]:
    """Give each method (or segmenter: ``kind``) the parameters it accepts; a parameter none accepts is an error."""
    per: dict[str, dict[str, Any]] = {e.name: {} for e in entries}
    for k, v in params.items():
        takers = [e.name for e in entries if k in e.info.get("params", {})]
        if not takers:
            acc = sorted({p for e in entries for p in e.info.get("params", {}) if p != "seed"})
            names = ", ".join(e.name for e in entries)
            raise BadParameterError(
                f"no listed {kind} ({names}) has a parameter {k!r}; they accept: {', '.join(acc) or 'none'}"
            )
        for n in takers:
            per[n][k] = v
    return per


def resolve_device(spec: str | None) -> str:
    """``None`` → ``"cuda"`` when available else ``"cpu"``; an unavailable or unknown device is an error."""
    import torch

    if spec is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    s = spec.strip().lower()
    try:
        dev = torch.device(s)
    except (RuntimeError, ValueError):
        raise BadParameterError(f"--device {spec!r} is not a device: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadParameterError("--device cuda: CUDA is not available on this machine; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BadParameterError(f"--device {s}: there are only {torch.cuda.device_count()} CUDA devices")
    if dev.type not in ("cpu", "cuda"):
        raise BadParameterError(f"--device {spec!r} is not supported: use cpu or cuda")
    return s


def get_model(name: str, weights: str | None, device: str) -> Any:
    """Load a model once per (name, weights, device) in this process (the CLI is also used in-process)."""
    from ..models import load_model

    key = (name, str(Path(weights).resolve()) if weights else None, device)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_model(name, weights=weights, device=device)
    return _MODEL_CACHE[key]


def resolve_target(spec: str | None, model: Any) -> int | None:
    """``--target``: ``None``, a class index (range-checked) or an exact label name (any case)."""
    if spec is None:
        return None
    s = spec.strip()
    n = model.num_classes
    if re.fullmatch(r"[+-]?\d+", s):
        k = int(s)
        if n is not None and not 0 <= k < n:
            raise BadParameterError(f"--target {k} is out of range: {model.name} has {n} classes (0..{n - 1})")
        return k
    labels = model.labels
    if not labels:
        raise BadParameterError(f"--target {s!r}: {model.name} has no class names; give a class index")
    exact = [i for i, lab in enumerate(labels) if lab == s]
    if len(exact) == 1:
        return exact[0]
    folded = [i for i, lab in enumerate(labels) if lab.lower() == s.lower()]
    if len(folded) == 1:
        return folded[0]
    if folded:
        opts = ", ".join(f"{i} ({labels[i]})" for i in folded)
        raise BadParameterError(f"--target {s!r} names several classes: {opts}; give the index")
    close = difflib.get_close_matches(s.lower(), [lab.lower() for lab in labels], n=3, cutoff=0.6)
    hint = f" Close: {', '.join(repr(c) for c in close)}." if close else ""
    raise BadParameterError(
        f"--target {s!r} is not a class of {model.name}.{hint} Give an index 0..{n - 1} or an exact label"
    )


#: An IMAGE argument ``sample:NAME`` names a bundled photo (``spixel.data.sample_names()``).
SAMPLE_PREFIX = "sample:"


@dataclass
class Item:
    path: Path
    name: str = ""
    error: str | None = None
    sample: str | None = None

    @property
    def source(self) -> str:
        """What the user wrote: the file's path or ``sample:NAME``."""
        return str(self.path) if self.sample is None else SAMPLE_PREFIX + self.sample


def expand_images(args: Sequence[str]) -> list[Item]:
    """Files as given, folders as their image files (sorted); the same file twice is taken once.
    Output names are the stems, made unique (``cat``, ``cat-2`` …, case-insensitively)."""
    items: list[Item] = []
    seen_paths: set[Path] = set()
    seen_samples: set[str] = set()
    for a in args:
        if a.startswith(SAMPLE_PREFIX):
            name = a[len(SAMPLE_PREFIX) :].strip()
            if name not in seen_samples:
                seen_samples.add(name)
                items.append(Item(Path(name or "sample"), sample=name))
            continue
        p = Path(a)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
            if not files:
                items.append(Item(p, error=f"{p}: no image files in this folder"))
            for f in files:
                if f.resolve() not in seen_paths:
                    seen_paths.add(f.resolve())
                    items.append(Item(f))
        elif p.resolve() not in seen_paths:
            seen_paths.add(p.resolve())
            items.append(Item(p))
    used: set[str] = set()
    for it in items:
        stem = it.path.stem.strip() or "image"
        name, i = stem, 2
        while name.lower() in used:
            name, i = f"{stem}-{i}", i + 1
        used.add(name.lower())
        it.name = name
    return items


def load_item(it: Item) -> tuple[Any, tuple[int, int, int, int] | None]:
    """The photo of an IMAGE argument (uint8 ``H × W × 3``) and its annotated box in original pixels (bundled
    ``sample:NAME`` photos) or ``None``; an unreadable file or an unknown sample raises :class:`BadImageError`."""
    from ..io import load_image

    if it.error:
        raise BadImageError(it.error)
    if it.sample is None:
        return load_image(it.path), None
    try:
        from ..data import sample, sample_names
    except ImportError:
        raise BadImageError("the bundled photos (spixel.data) are not available in this installation") from None
    if it.sample not in sample_names():
        close = difflib.get_close_matches(it.sample, sample_names(), n=1)
        hint = f" Did you mean {SAMPLE_PREFIX}{close[0]}?" if close else ""
        raise BadImageError(
            f"{SAMPLE_PREFIX}{it.sample}: no such bundled photo.{hint} Choose one of: {', '.join(sample_names())}"
        )
    smp = sample(it.sample)
    return smp.image, tuple(int(v) for v in smp.box)  # type: ignore[return-value]


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def print_error(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"spixel: error: {msg}", file=sys.stderr)


def bad_images_exit(n_bad: int, n_items: int, done: str = "written") -> int:
    """The exit code after a run over ``n_items`` images of which ``n_bad`` could not be read (each was already
    reported on its own line): 2, with a summary line when others were ``done``, else 0."""
    if not n_bad:
        return 0
    if n_items > 1:
        print_error(f"{n_bad} of {n_items} image(s) could not be read; the others were {done}")
    return 2


def prepare_out(out: str | Path) -> Path:
    p = Path(out)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadParameterError(f"cannot create the output folder {str(p)!r}: {e.strerror or e}") from None
    return p


def parse_floats(spec: str, what: str) -> list[float]:
    try:
        vals = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise BadParameterError(f"{what} {spec!r}: give comma-separated numbers, e.g. 0.1,0.5,0.9") from None
    if not vals or any(v != v for v in vals):
        raise BadParameterError(f"{what} {spec!r}: give comma-separated numbers, e.g. 0.1,0.5,0.9")
    return vals
