"""Its presence puts tests/ on sys.path (pytest's default prepend import mode), so test
modules in every subdirectory can ``from helpers import ...`` (tests/helpers.py)."""
