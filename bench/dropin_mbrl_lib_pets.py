"""mbrl-lib's own PETS script (``mbrl.algorithms.pets.train``), unchanged vs. with ONE line
changed (the agent's ``_target_``: mbrl-fast's drop-in TrajectoryOptimizerAgent), in one run.

The config is mbrl-lib's ``pets_cartpole`` (examples/conf: algorithm/pets.yaml,
overrides/pets_cartpole.yaml, dynamics_model/gaussian_mlp_ensemble.yaml: 7 members,
4 x 200 SiLU, TS1 "random_model", CEM 5 iterations, elite ratio 0.1, horizon 15, model
trained every 50 steps) with the planner sized for 2 CPU cores (population and particles
below; the published 350 x 20 takes ~1.5 s per step on this machine). Seeds run
interleaved (mbrl-lib, mbrl-fast, next seed, ...) so both see the same machine load.

Threads: ``--threads`` (default 1) for torch and OpenMP in both runs. Time per trial:
wall-clock between env resets (planning, env steps, model training).
Planning: seconds inside ``agent.act``.

    python bench/dropin_mbrl_lib_pets.py --seeds 0 1 2 --trials 6 \
        --json bench/results/dropin_mbrl_lib_pets.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

AGENTS = {"mbrl-lib": "mbrl.planning.TrajectoryOptimizerAgent",
          "mbrl-fast": "mbrl_fast.integrations.mbrl_lib.TrajectoryOptimizerAgent"}


def pets_cartpole_cfg(agent_target: str, seed: int, trials: int, population: int,
                      particles: int):
    import omegaconf

    trial_length = 200
    return omegaconf.OmegaConf.create({
        "seed": seed, "device": "cpu", "debug_mode": False,
        "dynamics_model": {
            "_target_": "mbrl.models.GaussianMLP", "_recursive_": False, "device": "cpu",
            "num_layers": 4, "in_size": "???", "out_size": "???", "ensemble_size": 7,
            "hid_size": 200, "deterministic": False, "propagation_method": "random_model",
            "learn_logvar_bounds": False, "activation_fn_cfg": {"_target_": "torch.nn.SiLU"}},
        "algorithm": {
            "name": "pets", "normalize": True, "normalize_double_precision": True,
            "target_is_delta": True, "initial_exploration_steps": trial_length,
            "freq_train_model": 50, "learned_rewards": False, "num_particles": particles,
            "agent": {
                "_target_": agent_target,  # <- the one line that differs
                "_recursive_": False, "action_lb": "???", "action_ub": "???",
                "planning_horizon": 15, "replan_freq": 1, "verbose": False,
                "optimizer_cfg": {
                    "_target_": "mbrl.planning.CEMOptimizer", "num_iterations": 5,
                    "elite_ratio": 0.1, "population_size": population, "alpha": 0.1,
                    "device": "cpu", "lower_bound": "???", "upper_bound": "???",
                    "return_mean_elites": True, "clipped_normal": False}}},
        "overrides": {
            "env": "cartpole_continuous", "learned_rewards": False,
            "trial_length": trial_length, "num_steps": trials * trial_length, "num_elites": 5,
            "model_lr": 7.5e-4, "model_wd": 3e-5, "model_batch_size": 256,
            "validation_ratio": 0, "freq_train_model": 50, "patience": 25,
            "num_epochs_train_model": 25, "planning_horizon": 15}})


def run(name: str, seed: int, trials: int, population: int, particles: int) -> dict:
    """One pets.train run; per-trial returns, wall-clock and planning seconds."""
    import gymnasium as gym
    import mbrl.algorithms.pets as pets
    import mbrl.env.cartpole_continuous as cartpole_env
    import mbrl.env.reward_fns as reward_fns
    import mbrl.env.termination_fns as termination_fns
    import mbrl.planning

    class Timed(gym.Wrapper):
        """Records each episode's return and the wall-clock between resets; truncates at
        200 steps like mbrl-lib's EnvHandler's TimeLimit (whose reset passes ``options``,
        which mbrl-lib's CartPoleEnv does not take)."""

        def __init__(self, env):
            super().__init__(env)
            self.starts, self.returns, self.steps = [], [], []

        def reset(self, **kwargs):
            self.starts.append(time.perf_counter())
            self.returns.append(0.0)
            self.steps.append(0)
            return self.env.reset(**kwargs)

        def step(self, action):
            out = self.env.step(action)
            self.returns[-1] += float(out[1])
            self.steps[-1] += 1
            if self.steps[-1] % 50 == 0:
                print(f"  {name} seed {seed}: episode {len(self.steps) - 1}, step "
                      f"{self.steps[-1]}, {time.perf_counter() - self.starts[-1]:.1f} s",
                      file=sys.stderr, flush=True)
            return out[:3] + (out[3] or self.steps[-1] >= 200,) + out[4:]

    planning, first_trial = [], []
    create = mbrl.planning.create_trajectory_optim_agent_for_model

    def timed_create(*args, **kwargs):  # time agent.act, whichever agent the config builds
        agent = create(*args, **kwargs)
        first_trial.append(len(timed.starts))  # after the random exploration episodes
        act = agent.act

        def timed_act(obs, **kw):
            t0 = time.perf_counter()
            out = act(obs, **kw)
            planning.append(time.perf_counter() - t0)
            return out
        agent.act = timed_act
        return agent

    np.random.seed(seed)
    torch.manual_seed(seed)
    env = cartpole_env.CartPoleEnv()
    env.reset(seed=seed)
    env.action_space.seed(seed)
    timed = Timed(env)
    cfg = pets_cartpole_cfg(AGENTS[name], seed, trials, population, particles)
    mbrl.planning.create_trajectory_optim_agent_for_model = timed_create
    try:
        import tempfile

        with tempfile.TemporaryDirectory() as work_dir:
            t0 = time.perf_counter()
            pets.train(timed, termination_fns.cartpole, reward_fns.cartpole, cfg, silent=True,
                       work_dir=work_dir)
            total = time.perf_counter() - t0
    finally:
        mbrl.planning.create_trajectory_optim_agent_for_model = create
    k = first_trial[0]  # resets before k were the random exploration's; each later one a trial
    trial_starts = timed.starts[k:]
    trial_ends = trial_starts[1:] + [t0 + total]
    steps = timed.steps[k:]
    plan_per_trial = [sum(planning[sum(steps[:i]):sum(steps[:i + 1])]) for i in range(len(steps))]
    return {"planner": name, "seed": seed, "returns": timed.returns[k:],
            "trial_s": [e - s for s, e in zip(trial_starts, trial_ends, strict=True)],
            "planning_s": plan_per_trial, "steps": steps, "total_s": total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=6, help="num_steps = trials x 200")
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--particles", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch / OpenMP threads for both (on 2 oversubscribed cores, 2 threads "
                         "made mbrl-lib's act 10-20x slower than 1: each parallel op waits for "
                         "a descheduled thread)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for seed in args.seeds:
        for name in AGENTS:
            r = run(name, seed, args.trials, args.population, args.particles)
            print(f"{name} seed {seed}: returns {[round(x) for x in r['returns']]} "
                  f"s/trial {[round(x, 1) for x in r['trial_s']]}", flush=True)
            runs.append(r)
            write(args, runs)  # after every run: a partial result survives an interruption
    return 0


def summarize(runs: list[dict]) -> dict:
    summary = {}
    for name in AGENTS:
        mine = [r for r in runs if r["planner"] == name]
        if not mine:
            return summary
        per_step = [sum(r["trial_s"]) / sum(r["steps"]) for r in mine]
        plan_step = [sum(r["planning_s"]) / sum(r["steps"]) for r in mine]
        finals = [float(np.mean(r["returns"][-2:])) for r in mine]
        summary[name] = {
            "seeds": [r["seed"] for r in mine],
            "s_per_trial_mean": statistics.mean(t for r in mine for t in r["trial_s"]),
            "s_per_200_step_trial": 200 * statistics.mean(per_step),
            "planning_s_per_step": statistics.mean(plan_step),
            "return_last2_per_seed": finals, "return_last2_mean": statistics.mean(finals),
            "return_last2_std": statistics.pstdev(finals),
            "best_return_per_seed": [max(r["returns"]) for r in mine]}
    lib, fast = summary["mbrl-lib"], summary["mbrl-fast"]
    summary["speedup_per_200_step_trial"] = (lib["s_per_200_step_trial"]
                                             / fast["s_per_200_step_trial"])
    summary["speedup_planning_per_step"] = lib["planning_s_per_step"] / fast["planning_s_per_step"]
    return summary


def write(args, runs: list[dict]) -> None:
    summary = summarize(runs)
    print(json.dumps(summary), flush=True)
    if args.json:
        out = {"what": __doc__.split("\n\n")[0], "command": "python " + " ".join(sys.argv),
               "cpu": "AMD EPYC (Zen 5, AVX-512, AVX512-BF16), 2 cores shared with other jobs",
               "load_average": os.getloadavg(), "torch_threads": torch.get_num_threads(),
               "torch": torch.__version__, "python": platform.python_version(),
               "config": vars(args), "summary": summary, "runs": runs}
        from mbrl_fast.benchmarks.harness import write_json
        write_json(args.json, out)

if __name__ == "__main__":
    sys.exit(main())
