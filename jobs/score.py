"""``python -m jobs.score`` = ``mlops score`` (see ``mlops score --help``)."""

import sys

from jobs import run

if __name__ == "__main__":
    sys.exit(run("score"))
