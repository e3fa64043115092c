"""Entry point of the frozen app: the same `locus` command the pip install gives.

The frozen executable also starts its own worker processes (``--parse-worker``,
``--embed-worker``, ``--grammar-check-worker``,
``--cpu-check-worker``); app.cli.main routes those before
parsing any arguments (app/cli/__init__.py).
"""

import multiprocessing
import sys

from app.cli import main

if __name__ == "__main__":
    # Libraries that use multiprocessing (torch's DataLoader, joblib) re-run this
    # executable for their children; freeze_support() turns those runs into the child.
    multiprocessing.freeze_support()
    sys.exit(main())
