"""``python -m jobs.controller`` = ``mlops controller`` (see ``mlops controller --help``)."""

import sys

from jobs import run

if __name__ == "__main__":
    sys.exit(run("controller"))
