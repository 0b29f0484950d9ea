"""Tasks: batched torch reward / termination functions, a registry, and extra envs.

    from mbrl_fast.envs import get_task, list_tasks, register_task, Task
    task = get_task("HalfCheetah-v5")
    env = task.make_env()

Importing this package registers ``MBRLFast/CartpoleSwingup-v0`` with gymnasium
(``gymnasium.make("mbrl_fast.envs:MBRLFast/CartpoleSwingup-v0")`` imports it for you).
Needs the ``[envs]`` extra (gymnasium + mujoco).
"""

from mbrl_fast.envs import (  # noqa: F401  (register the tasks)
    cartpole_swingup,
    classic_control,
    mujoco_tasks,
)
from mbrl_fast.envs.registry import Task, get_task, list_tasks, never_terminates, register_task

__all__ = ["Task", "get_task", "list_tasks", "never_terminates", "register_task"]
