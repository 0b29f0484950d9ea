"""numba: compile users' plain-Python reward functions into C callbacks for the C++ rollout.

Importing this package does not import numba; ``compile_reward`` does (the ``[numba]`` extra).
"""

from mbrl_fast.ops._numba.reward import compile_reward

__all__ = ["compile_reward"]
