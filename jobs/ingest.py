"""``python -m jobs.ingest`` = ``mlops ingest`` (see ``mlops ingest --help``)."""

import sys

from jobs import run

if __name__ == "__main__":
    sys.exit(run("ingest"))
