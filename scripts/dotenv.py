"""Run a command in the project's configuration: the environment, with .env under it.

    python scripts/dotenv.py COMMAND [ARG...]

The rule of the settings (config/settings/base.py): a variable set in the environment wins
over the same one in .env, and DJANGO_READ_DOT_ENV=0 ignores .env. The Makefile runs every
target's commands (but the tests') through this, so that `make run`, the processes it starts
and `make smoke` in another shell see one configuration: honcho is told not to read .env
itself, because it would let .env win over the environment.
"""

import os
import sys
from pathlib import Path

import environ

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if environ.Env().bool("DJANGO_READ_DOT_ENV", default=True) and ENV_FILE.exists():
        environ.Env.read_env(ENV_FILE, overwrite=False)
    os.execvp(argv[0], argv)  # noqa: S606 - runs what the Makefile asks for, as make would
    return 127  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
