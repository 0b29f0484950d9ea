"""Our SAC against Stable-Baselines3's on one fixed dataset: do their critics learn alike?

    python bench/sac_vs_sb3_offline.py --json bench/results/sac_vs_sb3_offline_hopper.json

A check of the learner's math, not of its speed (``bench/sac_update.py`` times it). Both
learners train on the same replay data, which never grows (no env steps in between), with
the same hyperparameters: 2 x 256 ReLU, Adam 3e-4, batch 256, tau 0.005, gamma 0.99,
automatic entropy tuning from alpha 1 to ``--target-entropy``. The data are the first
phase of an MBPO or SAC run on the task: ``--rows`` env steps with uniform random actions
(one seed, episodes reset on termination or truncation).

Every ``--every`` updates each learner reports the mean min-twin Q over a fixed probe set
of (obs, act) rows of the data, its alpha and its policy's entropy (-log pi of its own
samples at the probe observations). Without fresh data a critic drifts upward (nothing
corrects Q(s', pi(s')) where pi leaves the data), so Q grows for both; what the check asks
is that the two libraries grow alike: the JSON compares the gap between the libraries
(same seed index) with the gap between two seeds of the same library.

Why it exists: MBPO's Hopper run (docs/mbpo.md) showed a critic at ~500 where the policy's
soft return is < 0; this separates "our SAC update is wrong" from "SAC at MBPO's 20
updates per env step overestimates" (SB3's behaves the same way).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mbrl_fast.agents.sac import SAC, SACBatch, SACConfig
from mbrl_fast.benchmarks.harness import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sac_update import cpu_name, git_commit  # noqa: E402


def collect(env_id: str, rows: int, seed: int) -> dict[str, np.ndarray]:
    """``rows`` transitions with uniform random actions in policy units [-1, 1]."""
    import gymnasium as gym

    env = gym.make(env_id)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("obs", "act", "next_obs", "reward", "terminated")}
    obs, _ = env.reset(seed=seed)
    for _ in range(rows):
        act = rng.uniform(-1.0, 1.0, low.shape)
        env_act = low + (act + 1.0) * 0.5 * (high - low)
        next_obs, reward, terminated, truncated, _ = env.step(env_act)
        for k, v in zip(out, (obs, act, next_obs, reward, terminated), strict=True):
            out[k].append(v)
        obs = env.reset()[0] if terminated or truncated else next_obs
    env.close()
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def train_ours(data, probe, updates: int, every: int, seed: int, target_entropy: float):
    n, obs_dim = data["obs"].shape
    act_dim = data["act"].shape[1]
    sac = SAC(obs_dim, act_dim, SACConfig(target_entropy=target_entropy), seed=seed)
    t = {k: torch.from_numpy(v) for k, v in data.items()}
    rng = np.random.default_rng(seed + 1000)

    def sample() -> SACBatch:
        i = torch.from_numpy(rng.integers(0, n, sac.config.batch_size))
        return SACBatch(t["obs"][i], t["act"][i], t["reward"][i], t["next_obs"][i],
                        t["terminated"][i])

    po, pa = (torch.from_numpy(x) for x in probe)
    curve = []
    for done in range(every, updates + 1, every):
        sac.update_many(sample, every)
        with torch.no_grad():
            q = sac._q(torch.cat([po, pa], -1), *sac._live_wb()).min(0).values.mean()
            _, logp = sac.policy.sample(po)
        curve.append(dict(updates=done, q_probe=float(q), alpha=sac.alpha,
                          entropy=float(-logp.mean())))
    return curve


def train_sb3(data, probe, updates: int, every: int, seed: int, target_entropy: float):
    import gymnasium as gym
    import stable_baselines3 as sb3
    from stable_baselines3.common.logger import configure

    n, obs_dim = data["obs"].shape
    act_dim = data["act"].shape[1]

    class Spaces(gym.Env):  # SB3 wants an env for the spaces only; it is never stepped
        observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

    model = sb3.SAC("MlpPolicy", Spaces(), learning_rate=3e-4, buffer_size=n, batch_size=256,
                    tau=0.005, gamma=0.99, ent_coef="auto", target_entropy=target_entropy,
                    learning_starts=0, policy_kwargs=dict(net_arch=[256, 256]), seed=seed,
                    device="cpu")
    model.set_logger(configure(None, []))
    rb = model.replay_buffer
    rb.observations[:, 0], rb.next_observations[:, 0] = data["obs"], data["next_obs"]
    rb.actions[:, 0], rb.rewards[:, 0] = data["act"], data["reward"]
    rb.dones[:, 0] = data["terminated"]
    rb.pos, rb.full = 0, True
    po, pa = (torch.from_numpy(x) for x in probe)
    curve = []
    for done in range(every, updates + 1, every):
        model.train(gradient_steps=every, batch_size=256)
        with torch.no_grad():
            q = torch.min(*model.critic(po, pa)).mean()
            _, logp = model.actor.action_log_prob(po)
            alpha = model.log_ent_coef.exp()
        curve.append(dict(updates=done, q_probe=float(q), alpha=float(alpha),
                          entropy=float(-logp.mean())))
    return curve


def rel_gap(a: list[dict], b: list[dict], key: str) -> float:
    """Largest |a - b| / max(|a|, |b|, 1) over the checkpoints."""
    return max(abs(x[key] - y[key]) / max(abs(x[key]), abs(y[key]), 1.0)
               for x, y in zip(a, b, strict=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--rows", type=int, default=5000, help="random env steps in the data")
    p.add_argument("--updates", type=int, default=10_000, help="gradient steps per learner")
    p.add_argument("--every", type=int, default=1000, help="updates between probes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--target-entropy", type=float, default=-1.0,
                   help="MBPO's Hopper setting (-1); SAC's heuristic is -|A|")
    p.add_argument("--probe", type=int, default=2000, help="probe rows")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    for name in ("rows", "updates", "every", "probe"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.updates % a.every:
        p.error(f"--updates ({a.updates}) must be a multiple of --every ({a.every})")
    torch.set_num_threads(1)
    data = collect(a.env, a.rows, seed=0)
    idx = np.random.default_rng(99).integers(0, a.rows, a.probe)
    probe = (data["obs"][idx], data["act"][idx])
    curves: dict[str, dict[str, list[dict]]] = {"mbrl-fast": {}, "sb3": {}}
    tic = time.perf_counter()
    for seed in a.seeds:
        for lib, fn in (("mbrl-fast", train_ours), ("sb3", train_sb3)):
            curves[lib][str(seed)] = c = fn(data, probe, a.updates, a.every, seed,
                                            a.target_entropy)
            last = c[-1]
            print(f"{lib:9s} seed {seed}: Q {last['q_probe']:.1f} alpha {last['alpha']:.3f} "
                  f"entropy {last['entropy']:.2f} after {last['updates']} updates", flush=True)
    gaps = {}
    for key in ("q_probe", "alpha"):
        between = [rel_gap(curves["mbrl-fast"][str(s)], curves["sb3"][str(s)], key)
                   for s in a.seeds]
        gaps[key] = dict(between_libraries=max(between))
        if len(a.seeds) > 1:
            s0, s1 = str(a.seeds[0]), str(a.seeds[1])
            gaps[key]["between_seeds_mbrl_fast"] = rel_gap(curves["mbrl-fast"][s0],
                                                           curves["mbrl-fast"][s1], key)
            gaps[key]["between_seeds_sb3"] = rel_gap(curves["sb3"][s0], curves["sb3"][s1], key)
    print(json.dumps(gaps, indent=1))
    if a.json:
        import stable_baselines3

        out = dict(
            what="mbrl-fast's SAC and SB3's SAC trained on one fixed dataset of random "
                 f"{a.env} transitions: mean min-twin Q on probe rows, alpha, entropy",
            command="python bench/sac_vs_sb3_offline.py " + " ".join(argv or sys.argv[1:]),
            cpu=cpu_name(), commit=git_commit(), torch=torch.__version__,
            sb3=stable_baselines3.__version__, python=platform.python_version(),
            torch_threads=1, rows=a.rows, updates=a.updates, seeds=a.seeds,
            target_entropy=a.target_entropy, seconds=round(time.perf_counter() - tic, 1),
            max_relative_gap=gaps, curves=curves)
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
