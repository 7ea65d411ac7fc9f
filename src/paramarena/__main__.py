"""``python -m paramarena``: the command line (same as the ``paramarena`` script)."""

from __future__ import annotations

from paramarena.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
