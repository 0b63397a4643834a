"""``python -m virtdriver.vmware.simulator build|path``: the launcher binary.

``build`` builds it into the user's cache if needed (saying so on stderr) and prints its
path; ``path`` prints where it is or would be, building nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .build import VcsimError, build_launcher, launcher_path


def main(argv: list[str] | None = None) -> int:
    """Parse the command, print the launcher's path; one line on stderr on failure."""
    parser = argparse.ArgumentParser(prog="python -m virtdriver.vmware.simulator",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "path"])
    parser.add_argument("--cache-dir", type=Path,
                        help="where the binary goes (default: $XDG_CACHE_HOME/virtdriver)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build_launcher(args.cache_dir))
        else:
            print(launcher_path(args.cache_dir))
    except VcsimError as error:
        print(f"virtdriver: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
