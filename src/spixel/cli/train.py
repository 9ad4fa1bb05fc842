"""``spixel train`` (models on the synthetic ground truth) and ``spixel bench`` (paper tables from them)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import BadParameterError, SpixelError
from .common import parse_floats, prepare_out


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from ..data import SyntheticDataset
    from ..train import recipes
    from ..train.checkpoint import load_checkpoint

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.lr is not None and not args.lr > 0:
        raise BadParameterError(f"--lr must be > 0, got {args.lr}")
    if args.recipe == "finetune":
        return _finetune(args)
    for opt in ("weights", "data", "test", "input_size"):
        if getattr(args, opt) is not None and not (args.recipe in ("gad", "roar") and opt in ("data", "test")):
            raise BadParameterError(f"--{opt.replace('_', '-')} applies to finetune only (--data, --test: gad, roar)")
    if args.recipe in ("gad", "roar") and args.data is not None and args.base is None:
        raise BadParameterError(
            f"{args.recipe} --data: give --base, the model fine-tuned on that data (spixel train finetune)"
        )
    if args.arch not in (None, "resnet", "vgg"):
        raise BadParameterError(f"--arch {args.arch!r}: the synthetic recipes train resnet or vgg")
    levels = parse_floats(args.levels, "--levels")
    alphas = parse_floats(args.alphas, "--alphas")
    pair = parse_floats(args.pair, "--pair")
    if len(pair) != 2 or any(v != int(v) for v in pair):
        raise BadParameterError(f"--pair {args.pair!r}: give two class indices a,b, e.g. 0,1")
    tiny_size = recipes.TINY_DATA["size"]
    if args.recipe == "tiny" and args.size not in (None, tiny_size):
        raise BadParameterError(f"the tiny recipe trains on {tiny_size}×{tiny_size} images; drop --size")
    if args.recipe == "benchmark" and args.base is not None:
        raise BadParameterError("--base applies to roar and gad only")
    out = prepare_out(args.out)
    fit: dict[str, Any] = {"seed": args.seed}
    for k in ("epochs", "batch_size", "lr"):
        if getattr(args, k) is not None:
            fit[k] = getattr(args, k)
    progress = not args.no_progress
    n, size = args.n or 8000, args.size or 64
    t0 = time.perf_counter()
    if args.recipe == "benchmark":
        e = fit.pop("epochs", None)
        epochs = {} if e is None else {"epochs": e, "vgg_epochs": e, "split_epochs": e, "roar_epochs": e}
        man = recipes.train_benchmark_set(
            out, n=n, n_test=args.n_test, size=size, data_seed=args.data_seed, k=args.k,
            roar_levels=levels, gad_pair=(int(pair[0]), int(pair[1])), gad_alphas=alphas, progress=progress,
            **epochs, **fit,
        )  # fmt: skip
        for row in man["models"]:
            print(f"  {row['path']}: held-out accuracy {row['accuracy']:.1%}")
        print(f"spixel: wrote {len(man['models'])} checkpoints and manifest.json to {out}/ in {man['seconds']:.0f} s")
        return 0
    if args.recipe == "tiny":
        tiny = {**fit, **({"arch": args.arch} if args.arch else {})}
        rows = [recipes.train_tiny(out, n=n, n_test=args.n_test, data_seed=args.data_seed, progress=progress, **tiny)]
        return _report_trained(rows, out, t0)
    arch = args.arch or "resnet"
    one = {**fit, "epochs": fit.get("epochs", 40 if arch == "resnet" else 24)}  # ~95 % at n=8000 (measured)
    train = SyntheticDataset(n, size, args.data_seed)
    test = SyntheticDataset(args.n_test, size, args.data_seed + 1)
    if args.recipe == "one":
        rows = [recipes.train_one(train, test, out, arch=arch, progress=progress, **one)]
    elif args.recipe == "halves":
        rows = recipes.train_halves(train, test, out, arch=arch, progress=progress, **one)
    elif args.recipe == "folds":
        if args.k < 2:
            raise BadParameterError(f"--k must be at least 2, got {args.k}")
        rows = recipes.train_folds(train, test, out, k=args.k, arch=arch, progress=progress, **one)
    else:
        if args.recipe == "roar":
            from ..registry import METHODS

            METHODS.get(args.method)  # an unknown name fails here, before any work
        if args.base is not None:
            base = load_checkpoint(args.base)
            if args.data is not None:  # gad / roar on the user's dataset (the base's classes), not the synthetic one
                from ..train.finetune import item_arrays

                train, test = item_arrays(args.data, base, test=args.test, holdout=args.holdout, seed=args.seed)
        else:
            first = recipes.train_one(train, test, out, arch=arch, progress=progress, **one)
            print(f"  {first.path}: held-out accuracy {first.accuracy:.1%} (base model)")
            base = first.model
        # --epochs / --batch-size / --lr (when given) train the retrained models and the supports too
        kw = {k: v for k, v in fit.items() if k != "seed"}
        if args.recipe == "roar":
            rows = [recipes.train_roar_reference(base, train, test, out, progress=progress, **kw)]
            rows += recipes.train_roar(base, train, test, out, args.method, levels=levels, progress=progress, **kw)
        else:
            rows = recipes.train_gad_supports(base, train, test, out, pair=(int(pair[0]), int(pair[1])),
                                              alphas=alphas, seed=args.seed, progress=progress, **kw)  # fmt: skip
    return _report_trained(rows, out, t0)


def _finetune(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..train.finetune import FINETUNE_DEFAULTS, finetune
    from .common import resolve_device

    if args.arch is None or args.data is None:
        raise BadParameterError("finetune needs --arch (torchvision:NAME, timm:NAME or a checkpoint) and --data")
    if not 0 <= args.holdout < 1:
        raise BadParameterError(f"--holdout must lie in [0, 1), got {args.holdout}")
    out = prepare_out(args.out)
    t0 = time.perf_counter()
    res = finetune(
        args.arch,
        args.data,
        out,
        weights=args.weights,
        test=args.test,
        epochs=args.epochs or FINETUNE_DEFAULTS["epochs"],
        batch_size=args.batch_size or FINETUNE_DEFAULTS["batch_size"],
        optimizer=args.optimizer,
        lr=args.lr if args.lr is not None else FINETUNE_DEFAULTS["lr"],
        schedule=args.schedule,
        holdout=args.holdout,
        augment=not args.no_augment,
        input_size=args.input_size,
        seed=args.seed,
        workers=args.workers,
        device=resolve_device(args.device),
        resume=not args.no_resume,
        progress=not args.no_progress,
        log=lambda s: tqdm.write(f"  {s}"),
    )
    print(
        f"  {res.path}: held-out accuracy {res.accuracy:.1%} (before fine-tuning {res.start_accuracy:.1%})"
        + (f"; {res.skipped} unreadable item(s) skipped" if res.skipped else "")
    )
    print(f"spixel: wrote {res.path.name}, last.pt and history.json to {out}/ in {time.perf_counter() - t0:.0f} s")
    return 0


def _report_trained(rows: list[Any], out: Path, t0: float) -> int:
    for r in rows:
        print(f"  {r.path}: held-out accuracy {r.accuracy:.1%}")
    print(f"spixel: wrote {len(rows)} checkpoint(s) to {out}/ in {time.perf_counter() - t0:.0f} s")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from ..bench.report import write_stability_report
    from ..bench.stability import METHODS as STABILITY_METHODS
    from ..bench.stability import run_stability

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    methods = tuple(STABILITY_METHODS)
    if args.methods:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    models = Path(args.models)
    if not models.is_dir():
        raise SpixelError(f"{models}: no such folder; train the models first: spixel train benchmark --out {models}")
    out = prepare_out(args.out)
    res = run_stability(
        models, n_test=args.n_test, n_mege=args.n_mege, seed=args.seed, methods=methods, quick=args.quick
    )
    paths = write_stability_report(res, out)
    print(f"spixel: wrote {', '.join(p.name for p in paths.values())} to {out}/ in {res['seconds']:.0f} s")
    return 0
