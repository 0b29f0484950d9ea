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


def pytest_configure(config):
    """Keep the collection order below for xdist: its default hands out files with the most
    tests first, which put the one-test learning files (minutes each) last, one after the
    other on one worker while the others sat idle."""
    if getattr(config.option, "loadscopereorder", None):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """The slow (learning) tests first, in their files' order; the rest after them.

    pytest-xdist's ``--dist loadfile`` then hands the files to workers in this order: the
    few minutes-long learning tests start at once on different workers and the many short
    tests fill in around them.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
