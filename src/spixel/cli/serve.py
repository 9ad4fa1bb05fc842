"""``spixel serve [--store S.db] [--model M] [--host 127.0.0.1] [--port 8501]``: start the browser explorer."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from ..errors import BadParameterError, SpixelError


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise SpixelError("spixel serve needs Streamlit: pip install 'spixel[serve]'") from None
    from ..serve import command, environment, is_loopback

    if args.store is not None:
        from ..experiments import Store

        with Store(args.store):  # a missing or foreign file is a one-line error here, not in the browser
            pass
    if args.cache_maps is not None and not os.path.isdir(args.cache_maps):
        raise BadParameterError(f"--cache-maps {args.cache_maps}: no such folder")
    if args.weights is not None and not os.path.isfile(args.weights):
        raise BadParameterError(f"--weights {args.weights}: no such file")
    device = None
    if args.device is not None:
        from .common import resolve_device

        device = resolve_device(args.device)
    cmd = command(args.host, args.port)
    env = environment(
        store=args.store,
        model=args.model,
        weights=args.weights,
        cache_maps=args.cache_maps,
        device=device,
        host=args.host,
    )
    if not is_loopback(args.host):
        print(
            f"spixel: serving on {args.host}: anyone who reaches it can use the explorer (uploads and bundled photos "
            "only; the model and store are fixed to those given here)",
            file=sys.stderr,
        )
    print(f"spixel: the explorer is at http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    proc = subprocess.Popen(cmd, env=env)
    try:
        code = proc.wait()
        if code not in (0, -signal.SIGINT, -signal.SIGTERM):
            raise SpixelError(f"the explorer stopped (exit {code}); is port {args.port} free? try --port N")
        return 0
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0
