"""Random shooting on Swimmer-v5 with MuJoCo itself as the model (not a test).

MB-MF's Swimmer MPC (random shooting on the learned model) returns 18-27 per 1000-step
episode (bench/results/learning_mbmf_swimmer.json). This runs the same planner with the
exact dynamics (``mujoco.rollout``): ``--population`` uniform sequences of ``--horizon``
decisions, each action held ``--hold`` env steps, scored by the forward progress of the
tip over the horizon (the env's reward is x-velocity; its control cost, 1e-4 |a|^2, is
left out), the best sequence's first action executed, for ``--steps`` env steps. With
``--hold 1`` it is the paper's random shooting on gymnasium's 0.04 s step; ``--hold 4``
gives the same 20 decisions the 0.16 s step of the paper's Swimmer (3.2 s of lookahead)::

    python bench/swimmer_planner_ceiling.py --hold 1 --json bench/results/swimmer_ceiling_hold1.json
    python bench/swimmer_planner_ceiling.py --hold 4 --json bench/results/swimmer_ceiling_hold4.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

import gymnasium as gym
import mujoco
import mujoco.rollout
import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hold", type=int, default=1, help="env steps each planned action is held")
    ap.add_argument("--horizon", type=int, default=20, help="planned decisions per sequence")
    ap.add_argument("--population", type=int, default=1000, help="candidate sequences")
    ap.add_argument("--steps", type=int, default=1000, help="env steps of the episode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if min(args.hold, args.horizon, args.population, args.steps) < 1:
        ap.error("--hold, --horizon, --population and --steps must be >= 1")

    env = gym.make("Swimmer-v5")
    env.reset(seed=args.seed)
    sim = env.unwrapped
    model, data, frame_skip = sim.model, sim.data, sim.frame_skip
    kind = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.zeros(mujoco.mj_stateSize(model, kind))
    rng = np.random.default_rng(args.seed)
    rewards, start, t = [], time.perf_counter(), 0
    while t < args.steps:
        mujoco.mj_getState(model, data, state, kind)
        plans = rng.uniform(-1.0, 1.0, size=(args.population, args.horizon, 2))
        controls = np.repeat(plans, args.hold * frame_skip, axis=1)  # one row per mj_step
        states, _ = mujoco.rollout.rollout(model, data, np.tile(state, (args.population, 1)),
                                           controls)
        best = int(np.argmax(states[:, -1, 1]))  # qpos[0] (after time) at the horizon
        for _ in range(min(args.hold, args.steps - t)):
            _, reward, terminated, truncated, _ = env.step(plans[best, 0].astype(np.float32))
            rewards.append(float(reward))
            t += 1
    seconds = time.perf_counter() - start
    out = {"what": "random shooting on Swimmer-v5 with the exact dynamics (mujoco.rollout)",
           "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
           "hold": args.hold, "horizon": args.horizon,
           "lookahead_s": round(args.horizon * args.hold * sim.dt, 3),
           "population": args.population, "steps": args.steps, "seed": args.seed,
           "return": round(sum(rewards), 2),
           "return_per_100_steps": [round(sum(rewards[i:i + 100]), 2)
                                    for i in range(0, len(rewards), 100)],
           "seconds": round(seconds, 1)}
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
