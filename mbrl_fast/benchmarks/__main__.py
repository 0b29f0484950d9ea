"""``python -m mbrl_fast.benchmarks {planner,ops} ...``"""

import sys

from mbrl_fast.benchmarks.cli import main

sys.exit(main())
