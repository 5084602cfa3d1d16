"""``python -m diffusion_lib``: the command line (:mod:`diffusion_lib.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
