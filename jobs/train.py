"""``python -m jobs.train`` = ``mlops train`` (see ``mlops train --help``)."""

import sys

from jobs import run

if __name__ == "__main__":
    sys.exit(run("train"))
