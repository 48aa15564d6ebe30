"""``python -m kshot.server [INDEX] [--host H] [--port P] ...``: run the server.

Every option also reads from its ``KSHOT_*`` environment variable; arguments win.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from kshot.errors import KshotError
from kshot.server import ServerSettings, serve


def main(argv: list[str] | None = None) -> int:
    """Parse arguments over the environment and serve."""
    parser = argparse.ArgumentParser(prog="python -m kshot.server", description=__doc__)
    parser.add_argument("index", nargs="?", help="index directory (else KSHOT_INDEX)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--read-only", action="store_true", default=None)
    parser.add_argument("--tokenizer")
    parser.add_argument("--device")
    parser.add_argument("--log-level")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = ServerSettings(**overrides)
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"kshot server: {where}: {message}", file=sys.stderr)
        return 2
    try:
        serve(settings)
    except KshotError as exc:  # a held writer lock, a broken index: one line, no traceback
        print(f"kshot server: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
