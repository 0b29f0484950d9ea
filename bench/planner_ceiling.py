"""MB-MF's random-shooting MPC with MuJoCo itself as the model: the teacher's ceiling (not a test).

MB-MF distils its MPC controller into a policy, so the controller's return bounds what the
distillation hands to PPO. This runs that controller with a perfect model: every env step,
``--population`` uniform action sequences of ``--horizon`` steps are rolled out from the
env's exact physics state (``mujoco.rollout``), scored by the task's own planning reward and
termination (``mbrl_fast.envs`` Task: the functions MB-MF's planner scores a learned model's
predictions with; rewards after a sequence's first terminal step count zero, as in
``Planner.evaluate``), and the best sequence's first action is executed. The episode runs
through falls (``terminate_when_unhealthy=False`` where the env has it), as MB-MF collects
its MPC data; the JSON also gives the return up to the first unhealthy step, which is the
episode's return in the env as users run it. Defaults are the task's MB-MF preset;
``--hold k`` holds each of the ``--horizon`` decisions k env steps (a longer lookahead with
as many decisions, e.g. the paper's 3.2 s on Swimmer with its 0.16 s step).
``--cem-iterations I`` plans with PETS's CEM instead (the library's default planner, not
MB-MF's): I iterations of ``--population`` sequences from the previous step's mean shifted
by one decision, initial variance ((high - low) / 4)^2, samples clipped to 2 sigma and the
bounds, ``--elites`` best, momentum ``--alpha``, the final mean's first action executed: a
stronger teacher at the same number of rollouts (e.g. 5 x 200 against 1 x 1,000)::

    python bench/planner_ceiling.py --env Hopper-v5 --threads 2 \
        --json bench/results/planner_ceiling_hopper.json
    python bench/planner_ceiling.py --env Swimmer-v5 --population 1000 --hold 4 \
        --json bench/results/planner_ceiling_swimmer_hold4.json
    python bench/planner_ceiling.py --env Swimmer-v5 --population 200 --cem-iterations 5 \
        --threads 2 --json bench/results/planner_ceiling_swimmer_cem.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

import mujoco
import mujoco.rollout
import numpy as np
import torch

from mbrl_fast.agents.mbmf import MBMF
from mbrl_fast.benchmarks.harness import write_json
from mbrl_fast.envs import get_task

QVEL_CLIP = {"Hopper-v5": 10.0, "Walker2d-v5": 10.0}  # the envs that clip qvel in their obs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="Hopper-v5", help="a MuJoCo task of mbrl_fast.envs")
    ap.add_argument("--horizon", type=int, default=None,
                    help="decisions per sequence (default: the MB-MF preset's horizon)")
    ap.add_argument("--hold", type=int, default=1,
                    help="env steps each decision is held (1: the planner's own sequences)")
    ap.add_argument("--population", type=int, default=None, help="default: the preset's")
    ap.add_argument("--steps", type=int, default=1000, help="env steps of the episode")
    ap.add_argument("--cem-iterations", type=int, default=0,
                    help="0: random shooting (MB-MF's planner); I > 0: PETS's CEM with I "
                         "iterations of --population sequences each")
    ap.add_argument("--elites", type=int, default=None,
                    help="CEM elites (default: a tenth of the population)")
    ap.add_argument("--alpha", type=float, default=0.1, help="CEM momentum")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="mujoco.rollout threads")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    planner = MBMF.make_config(args.env).planner
    horizon = args.horizon or planner.horizon
    population = args.population or planner.population
    if min(horizon, args.hold, population, args.steps, args.threads) < 1:
        ap.error("--horizon, --hold, --population, --steps and --threads must be >= 1")
    args.elites = args.elites or max(1, population // 10)
    if args.cem_iterations < 0 or not 1 <= args.elites <= population:
        ap.error("--cem-iterations must be >= 0 and --elites in [1, --population]")

    task = get_task(args.env)
    try:
        env = task.make_env(terminate_when_unhealthy=False)
    except TypeError:
        env = task.make_env()
    obs, _ = env.reset(seed=args.seed)
    sim = env.unwrapped
    model, data, skip = sim.model, sim.data, sim.frame_skip
    nq, nv = model.nq, model.nv
    kind = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.zeros(mujoco.mj_stateSize(model, kind))
    # rollout's workspaces, one per thread: never the env's own data, which a rollout
    # leaves at the end of its last trajectory
    scratch = [mujoco.MjData(model) for _ in range(args.threads)]
    low, high = np.asarray(task.action_low), np.asarray(task.action_high)
    rng = np.random.default_rng(args.seed)

    clip = QVEL_CLIP.get(args.env, np.inf)

    def observe(qpos, qvel):  # the task's observation: qpos (x included) + qvel, clipped
        return np.concatenate([qpos, np.clip(qvel, -clip, clip)], axis=-1)

    if not np.allclose(observe(data.qpos, data.qvel), obs):
        sys.exit(f"{args.env}: its observation is not qpos + qvel; not supported here")
    def score(decisions):  # [P, H, A] decisions -> [P] returns from the env's state
        plans = np.repeat(decisions, args.hold, axis=1)  # [P, H * hold, A]: per env step
        controls = np.repeat(plans, skip, axis=1)  # one row per mj_step
        p = len(decisions)
        states, _ = mujoco.rollout.rollout(model, scratch, np.tile(state, (p, 1)), controls)
        after = states[:, skip - 1::skip]  # [P, H hold, nstate]: after each env step
        path = np.concatenate([np.broadcast_to(obs, (p, 1, len(obs))),
                               observe(after[..., 1:1 + nq], after[..., 1 + nq:1 + nq + nv])],
                              axis=1)
        o, a = torch.as_tensor(path[:, :-1]), torch.as_tensor(plans)
        nxt = torch.as_tensor(path[:, 1:])
        r = task.reward_fn(o, a, nxt)
        if task.termination_fn is not None:
            done = task.termination_fn(o, a, nxt).to(torch.int32)
            r = r.masked_fill((done.cumsum(dim=-1) - done) > 0, 0.0)
        return r.sum(dim=-1).numpy()

    shape = (horizon, len(low))
    init_var = np.broadcast_to(((high - low) / 4) ** 2, shape)
    mean = np.broadcast_to((low + high) / 2, shape).copy()
    rewards, unhealthy_at, start = [], None, time.perf_counter()
    t = 0
    while t < args.steps:
        mujoco.mj_getState(model, data, state, kind)
        if not args.cem_iterations:  # random shooting: the best uniform sequence
            decisions = rng.uniform(low, high, size=(population, *shape))
            action = decisions[int(np.argmax(score(decisions))), 0]
        else:  # PETS's CEM from the shifted previous mean; the final mean's first action
            var = init_var.copy()
            for _ in range(args.cem_iterations):
                std = np.sqrt(var)
                x = mean + std * np.clip(rng.standard_normal((population, *shape)), -2, 2)
                x = np.clip(x, low, high)
                elites = x[np.argsort(score(x))[-args.elites:]]
                mean = args.alpha * mean + (1 - args.alpha) * elites.mean(axis=0)
                var = args.alpha * var + (1 - args.alpha) * elites.var(axis=0)
            action = mean[0].copy()
            mean = np.concatenate([mean[1:], (low + high)[None] / 2])
        for _ in range(min(args.hold, args.steps - t)):
            next_obs, reward, _, _, _ = env.step(action.astype(env.action_space.dtype))
            rewards.append(float(reward))
            if unhealthy_at is None and task.termination_fn is not None and bool(
                    task.termination_fn(torch.as_tensor(obs), torch.as_tensor(action),
                                        torch.as_tensor(next_obs))):
                unhealthy_at = t
            obs, t = next_obs, t + 1
            if t % 100 == 0:
                print(f"{t} steps: return {sum(rewards):.1f}, "
                      f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    until = len(rewards) if unhealthy_at is None else unhealthy_at + 1
    planner = (f"PETS's CEM ({args.cem_iterations} iterations, {args.elites} elites)"
               if args.cem_iterations else "MB-MF's random shooting")
    out = {"what": f"{planner} on {args.env} with the exact dynamics "
                   "(mujoco.rollout), scored by the task's planning reward and termination",
           "planner": "cem" if args.cem_iterations else "random",
           "cem_iterations": args.cem_iterations, "elites": args.elites, "alpha": args.alpha,
           "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
           "env": args.env, "horizon": horizon, "hold": args.hold, "population": population,
           "lookahead_s": round(horizon * args.hold * sim.dt, 3), "steps": args.steps,
           "seed": args.seed, "threads": args.threads,
           "return_through_falls": round(sum(rewards), 2),
           "first_unhealthy_step": unhealthy_at,
           "return_until_first_unhealthy": round(sum(rewards[:until]), 2),
           "return_per_100_steps": [round(sum(rewards[i:i + 100]), 2)
                                    for i in range(0, len(rewards), 100)],
           "seconds": round(seconds, 1)}
    print(json.dumps(out))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
