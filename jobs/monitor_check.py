"""``python -m jobs.monitor_check`` = ``mlops monitor-check``."""

import sys

from jobs import run

if __name__ == "__main__":
    sys.exit(run("monitor-check"))
