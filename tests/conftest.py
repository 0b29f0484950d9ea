"""Its presence puts tests/ on sys.path (pytest's default prepend import mode), so test
modules in every subdirectory can ``from helpers import ...`` (tests/helpers.py).

Under pytest-xdist (README's ``-n auto``) each worker gets an equal share of the cores
for OpenMP (torch and the compiled kernels): workers with every core each would
oversubscribe them, and OpenMP threads spin at barriers while they wait for a core.
Set here, before anything loads libgomp; an explicit OMP_NUM_THREADS wins.
"""

import os

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))
