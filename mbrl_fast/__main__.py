"""``python -m mbrl_fast``: the ``mbrl-fast`` command line (see mbrl_fast.cli)."""

import sys

from mbrl_fast.cli import main

sys.exit(main())
