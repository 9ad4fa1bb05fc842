"""``python -m spixel`` — the same as the ``spixel`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
