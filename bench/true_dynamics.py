"""A planner's ceiling: the same MPC loop with MuJoCo itself as the model (not a test).

For HalfCheetah-v5, the planner (mbrl_fast.planning) scores its candidate sequences by
rolling them out in the simulator (``mujoco.rollout``, exact dynamics) instead of the
learned ensemble, and runs MPC in the real env. The return it reaches says what the
planner config can do with a perfect model, so a learning run's gap to it is the
model's. Usage::

    python bench/true_dynamics.py --planner icem --population 250 --elites 20 --horizon 20
    python bench/true_dynamics.py --planner cem --population 300 --elites 30 --steps 300

writes bench/results/true_dynamics_halfcheetah_<planner>_p<pop>_h<H>.json (return per
step, final pitch, seconds per step).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mujoco
import mujoco.rollout
import numpy as np
import torch

from mbrl_fast.benchmarks.harness import write_json
from mbrl_fast.envs import get_task
from mbrl_fast.models import ProbabilisticEnsemble
from mbrl_fast.ops.rewards import HALFCHEETAH_DT
from mbrl_fast.planning import CEMPlanner, ICEMPlanner, MPCAgent

RESULTS = Path(__file__).resolve().parent / "results"


class SimulatorScore:
    """``Planner.evaluate`` replaced by exact rollouts: obs [N, 18] (qpos 9 incl. x, qvel 9),
    actions [N, P, H, 6] -> returns [N, P] of the HalfCheetah reward."""

    def __init__(self, env):
        self.model = env.unwrapped.model
        self.frame_skip = env.unwrapped.frame_skip
        self.data = mujoco.MjData(self.model)
        self.threads = [mujoco.MjData(self.model) for _ in range(2)]
        self.spec = mujoco.mjtState.mjSTATE_FULLPHYSICS

    def __call__(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        n, p, _, _ = actions.shape
        out = np.zeros((n, p), np.float32)
        state = np.zeros(mujoco.mj_stateSize(self.model, self.spec))
        for i in range(n):
            self.data.qpos[:], self.data.qvel[:] = obs[i, :9].numpy(), obs[i, 9:].numpy()
            mujoco.mj_forward(self.model, self.data)
            mujoco.mj_getState(self.model, self.data, state, self.spec)
            act = actions[i].numpy().astype(np.float64)  # [P, H, A]
            ctrl = np.repeat(act, self.frame_skip, axis=1)  # one control per physics step
            states, _ = mujoco.rollout.rollout(self.model, self.threads, state[None], ctrl)
            x = states[:, self.frame_skip - 1::self.frame_skip, 1]  # qpos[0] (state[0]: time)
            x = np.concatenate([np.full((p, 1), float(obs[i, 0])), x], axis=1)
            reward = (x[:, 1:] - x[:, :-1]) / HALFCHEETAH_DT - 0.1 * (act**2).sum(-1)
            out[i] = reward.sum(axis=1)
        return torch.from_numpy(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--planner", choices=("cem", "icem"), default="icem")
    p.add_argument("--population", type=int, default=250)
    p.add_argument("--elites", type=int, default=20)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--beta", type=float, default=0.25, help="iCEM colored-noise exponent")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    task = get_task("HalfCheetah-v5")
    env = task.make_env()
    placeholder = ProbabilisticEnsemble(task.obs_dim, task.act_dim, seed=0)  # never evaluated
    kw = dict(reward="halfcheetah", horizon=args.horizon, population=args.population,
              num_elites=args.elites, iterations=args.iterations, seed=args.seed)
    if args.planner == "icem":
        planner = ICEMPlanner(placeholder, task.action_low, task.action_high, beta=args.beta, **kw)
    else:
        planner = CEMPlanner(placeholder, task.action_low, task.action_high, **kw)
    planner.evaluate = SimulatorScore(env)
    agent = MPCAgent(planner)
    obs, _ = env.reset(seed=args.seed)
    agent.reset(args.seed)
    total, start = 0.0, time.perf_counter()
    for _ in range(args.steps):
        obs, reward, *_ = env.step(agent.act(obs))
        total += float(reward)
    seconds = (time.perf_counter() - start) / args.steps
    out = {"env": task.env_id, "planner": vars(args) | {"results": None},
           "steps": args.steps, "return": round(total, 1),
           "return_per_step": round(total / args.steps, 3),
           "final_pitch_rad": round(float(obs[2]), 3), "s_per_step": round(seconds, 3),
           "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / (f"true_dynamics_halfcheetah_{args.planner}_p{args.population}"
                           f"_h{args.horizon}.json")
    write_json(path, out)
    print(json.dumps(out), flush=True)
    env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
