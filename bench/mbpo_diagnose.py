"""An MBPO (or SAC) run's checkpoint, read only: does the policy exploit the model, and how
far is the critic from the policy's return?

    python bench/mbpo_diagnose.py RUN_DIR --json bench/results/mbpo_diagnose_hopper.json

1. **The model on the policy's own actions against the simulator** (MBPO runs). For
   ``--rows`` start states from the real buffer the MuJoCo state is rebuilt from the
   observation, ``qpos = [0, obs[:nq - 1]]``, ``qvel = obs[nq - 1:]`` (tasks whose
   observation drops only the x position: Hopper, Walker2d, HalfCheetah). Replaying each
   row's own buffer action must give the buffer's next observation and reward; rows where
   it does not (a velocity the observation clipped) are left out and counted, and if none
   replays the task is refused. Then, for the buffer's actions and for actions sampled
   from the policy as the branched rollouts draw them: reward bias and mean absolute
   error, termination rates (true, predicted, missed, false) and the next-state RMSE in
   units of the real state change's per-dimension std, for the elites' mean prediction and
   for a TS1 sample (a random elite per row, Gaussian noise). A policy that exploits its
   model shows a more optimistic reward or more missed terminations on its own actions
   than on the buffer's.
2. **The critic against Monte-Carlo.** For ``--episodes`` resets: min-twin Q(s0, a0) with
   a0 sampled from the policy, against the soft discounted return
   ``sum_t gamma^t (r_t - alpha log pi(a_t | s_t))`` of the sampled policy from there, to
   the episode's end (a time-limit cut drops at most gamma^1000 of the tail). Per episode
   also: what ended it (the task's health check that failed, or the time limit), and Q
   against the return-to-go at a few steps before the end: a critic that does not see a
   fall coming overestimates there, however right it is at s0.
3. With ``--cap-check`` (MBPO runs; it trains the model twice): does the epoch cap of a
   model round (``train.epochs``) stop training before the patience rule would? One round
   on all real data from the checkpoint's weights and trainer state with the run's cap,
   and one from the same state without it (jannerm/mbpo and mbrl-lib stop on patience
   only): epochs run and the elites' holdout MSE of each.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mbrl_fast.agents.sac import batch_from


def rebuild(env, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(qpos, qvel) of a MuJoCo env for one observation that drops only qpos[0]."""
    m = env.unwrapped.model
    if obs.shape[-1] != m.nq - 1 + m.nv:
        raise ValueError(f"the observation has {obs.shape[-1]} entries, not nq - 1 + nv = "
                         f"{m.nq - 1 + m.nv}: its MuJoCo state cannot be rebuilt from it")
    return np.concatenate([[0.0], obs[: m.nq - 1]]), obs[m.nq - 1:]


def step_from(env, view, obs: np.ndarray, action_env: np.ndarray):
    """The simulator's (next_obs, reward, terminated) for one step from obs."""
    env.unwrapped.set_state(*rebuild(env, obs))
    next_obs, reward, terminated, _, _ = env.unwrapped.step(action_env)
    return view(next_obs), float(reward), bool(terminated)


def _model_predictions(model, obs, act, gen) -> dict[str, tuple]:
    """Elite-mean and TS1-sample predictions of (next_obs, reward) for obs, act (float32)."""
    out = model.predict(obs, act)
    mean, logvar = out if isinstance(out, tuple) else (out, None)
    elites = model.elite_members
    mean = mean[elites]
    rows = torch.arange(obs.shape[0])
    pick = torch.randint(0, len(elites), (obs.shape[0],), generator=gen)
    sample = mean if logvar is None else \
        mean + (0.5 * logvar[elites]).exp() * torch.randn(mean.shape, generator=gen)
    preds = {}
    for name, y in (("mean", mean.mean(dim=0)), ("ts1", sample[pick, rows])):
        preds[name] = (obs + y[:, :-1], y[:, -1])
    return preds


def model_vs_sim(agent, rows: int = 3000, seed: int = 0) -> dict:
    """Part 1 of the module docstring; ``agent`` an MBPO with a Gaussian or deterministic
    ensemble predicting (delta state, reward)."""
    model, sac, view = agent.model, agent.sac, agent.view
    env = agent.task.make_env()
    env.reset(seed=seed)
    t = agent.buffer.sample(rows, np.random.default_rng(seed))
    obs, act = np.asarray(t.obs, np.float64), np.asarray(t.act, np.float64)
    to_env = lambda a: sac.policy.to_env(torch.as_tensor(a, dtype=torch.float32)).numpy()  # noqa: E731
    replay = [step_from(env, view, o, a) for o, a in zip(obs, to_env(act), strict=True)]
    replayed = np.array([np.allclose(n, tn, rtol=1e-5, atol=1e-5) and abs(r - tr) < 1e-5
                         for (n, r, _), tn, tr in zip(replay, t.next_obs, t.reward,
                                                      strict=True)])
    if not replayed.any():
        raise ValueError(f"{agent.task.env_id}: no buffer transition replays from its "
                         "observation, so the simulator cannot check the model here")
    obs, act = obs[replayed], act[replayed]
    gen = torch.Generator().manual_seed(seed)
    o32 = torch.as_tensor(obs, dtype=torch.float32)
    with torch.no_grad():
        pi_act, _ = sac.policy.sample(o32, eps=torch.randn(len(obs), sac.act_dim, generator=gen))
    scale = np.std(np.asarray(t.next_obs)[replayed] - obs, axis=0) + 1e-8
    result = dict(rows=int(len(obs)), rows_not_replayed=int((~replayed).sum()))
    for label, a in (("buffer_actions", torch.as_tensor(act, dtype=torch.float32)),
                     ("policy_actions", pi_act)):
        truth = [step_from(env, view, o, x) for o, x in zip(obs, to_env(a), strict=True)]
        true_next = np.stack([x[0] for x in truth])
        true_r = np.array([x[1] for x in truth])
        true_done = np.array([x[2] for x in truth])
        part = dict(true_reward=float(true_r.mean()), true_terminated=float(true_done.mean()))
        with torch.no_grad():
            preds = _model_predictions(model, o32, a, gen)
        for name, (nxt, r) in preds.items():
            done = np.asarray(view.termination(o32, a, nxt), dtype=bool) \
                if view.termination is not None else np.zeros(len(obs), dtype=bool)
            nxt, r = nxt.numpy(), r.numpy()
            part[name] = dict(
                reward=float(r.mean()), reward_bias=float(np.mean(r - true_r)),
                reward_abs_error=float(np.mean(np.abs(r - true_r))),
                terminated=float(done.mean()), missed=float(np.mean(true_done & ~done)),
                false=float(np.mean(~true_done & done)),
                next_state_rmse_in_std=float(np.sqrt(np.mean(((nxt - true_next) / scale) ** 2))))
        result[label] = part
    env.close()
    return result


def why_ended(env, terminated: bool) -> str:
    """Which health check ended an episode of a Hopper / Walker2d-style task (their
    ``_healthy_*_range`` attributes on qpos[1] = height, qpos[2] = torso angle and, for
    Hopper, state_vector()[2:]); "time limit" if it was not terminated."""
    if not terminated:
        return "time limit"
    u = env.unwrapped
    qpos, failed = u.data.qpos, []
    for name, value in (("height", qpos[1]), ("angle", qpos[2])):
        lo, hi = getattr(u, f"_healthy_{'z' if name == 'height' else name}_range", (None, None))
        if lo is not None and not lo < value < hi:
            failed.append(f"{name} {value:+.3f} outside ({lo}, {hi})")
    if hasattr(u, "_healthy_state_range"):
        lo, hi = u._healthy_state_range
        state = u.state_vector()
        i = 2 + int(np.argmax(np.abs(state[2:])))
        if not lo < state[i] < hi:
            failed.append(f"state_vector()[{i}] {state[i]:+.1f} outside ({lo}, {hi})")
    return "; ".join(failed) or "terminated (no health range to name)"


#: steps before an episode's end at which part 2 compares the critic with the return-to-go
BEFORE_END = (1, 10, 30, 100, 300)


def critic_vs_mc(agent, episodes: int = 5, seed: int = 0) -> dict:
    """Part 2 of the module docstring."""
    sac, view, gamma = agent.sac, agent.view, agent.config.sac.gamma
    env = agent.task.make_env()
    gen = torch.Generator().manual_seed(seed)
    alpha = sac.alpha
    real = batch_from(agent.buffer.sample(4096, np.random.default_rng(seed)))
    with torch.no_grad():
        q_real = sac._q(torch.cat([real.obs, real.act], -1), *sac._live_wb()).mean()
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + 100 + ep)
        qs, soft_rewards, ret, terminated, truncated = [], [], 0.0, False, False
        while not (terminated or truncated):
            o = torch.as_tensor(view(obs), dtype=torch.float32)[None]
            with torch.no_grad():
                a, logp = sac.policy.sample(o, eps=torch.randn(1, sac.act_dim, generator=gen))
                qs.append(float(sac._q(torch.cat([o, a], -1), *sac._live_wb()).min()))
            obs, r, terminated, truncated, _ = env.step(sac.policy.to_env(a)[0].numpy())
            soft_rewards.append(r - alpha * float(logp))
            ret += r
        # soft discounted return-to-go from every step; a time-limit cut drops <= gamma^1000
        to_go, g = np.empty(len(qs)), 0.0
        for t in range(len(qs) - 1, -1, -1):
            g = soft_rewards[t] + gamma * g
            to_go[t] = g
        steps = len(qs)
        out.append(dict(q0=qs[0], soft_discounted_return=float(to_go[0]), return_=ret,
                        steps=steps, ended=why_ended(env, terminated),
                        q_minus_return_to_go_before_end={
                            str(k): float(qs[steps - k] - to_go[steps - k])
                            for k in BEFORE_END if k <= steps},
                        q_minus_return_to_go_mean=float(np.mean(np.array(qs) - to_go))))
    env.close()
    q0 = float(np.mean([e["q0"] for e in out]))
    mc = float(np.mean([e["soft_discounted_return"] for e in out]))
    return dict(alpha=alpha, q_mean_on_real=float(q_real), q0=q0, soft_discounted_return=mc,
                overestimation=q0 - mc, episodes=out)


def cap_check(agent, uncapped: int = 1000) -> dict:
    """Part 3 of the module docstring."""
    from mbrl_fast.models import make_trainer

    c, model = agent.config, agent.model
    weights, trainer_state = copy.deepcopy(model.state_dict()), agent.trainer.state_dict()
    out = {}
    for cap in (c.train.epochs, uncapped):
        model.load_state_dict(weights)
        trainer = make_trainer(dataclasses.replace(c.train, epochs=cap), model, c.seed)
        trainer.load_state_dict(trainer_state)
        tic = time.perf_counter()
        fit = trainer.train(agent.buffer)
        out[str(cap)] = dict(epochs=fit.epochs, seconds=time.perf_counter() - tic,
                             elite_holdout_mse=float(np.mean(sorted(fit.holdout_mse)
                                                             [:model.num_elites])))
    model.load_state_dict(weights)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--rows", type=int, default=3000, help="start states for part 1")
    p.add_argument("--episodes", type=int, default=5, help="episodes for part 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cap-check", action="store_true", help="part 3 (trains the model twice)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.rows < 1 or args.episodes < 1:
        p.error("--rows and --episodes must be >= 1")
    from mbrl_fast.benchmarks.harness import machine_info, write_json
    from mbrl_fast.config import config_to_dict
    from mbrl_fast.runs import load_run

    torch.set_num_threads(args.threads)
    algo, agent, _ = load_run(args.run_dir)
    result = dict(what=__doc__.split("\n\n")[0].replace("\n", " "),
                  command="python bench/mbpo_diagnose.py " + " ".join(argv or sys.argv[1:]),
                  run_dir=str(args.run_dir), algo=algo, env_id=agent.config.env_id,
                  env_steps=int(agent.buffer.total_added),
                  config=config_to_dict(agent.config), machine=machine_info())
    if hasattr(agent, "model"):
        result["model_vs_sim"] = mv = model_vs_sim(agent, args.rows, args.seed)
        for label in ("buffer_actions", "policy_actions"):
            m = mv[label]
            print(f"{label}: true reward {m['true_reward']:.3f}, terminated "
                  f"{m['true_terminated']:.4f}; " + "; ".join(
                      f"{k} reward bias {m[k]['reward_bias']:+.3f}, terminated "
                      f"{m[k]['terminated']:.4f} (missed {m[k]['missed']:.4f}), next-state "
                      f"RMSE {m[k]['next_state_rmse_in_std']:.3f} std" for k in ("mean", "ts1")))
    if args.cap_check and hasattr(agent, "model"):
        result["cap_check"] = cc = cap_check(agent)
        print("model round, epochs cap -> epochs run, elite holdout MSE: " + ", ".join(
            f"{cap} -> {r['epochs']}, {r['elite_holdout_mse']:.5f}" for cap, r in cc.items()))
    result["critic_vs_mc"] = cv = critic_vs_mc(agent, args.episodes, args.seed)
    print(f"Q(s0, a0) {cv['q0']:.1f} vs soft discounted return {cv['soft_discounted_return']:.1f}"
          f" (alpha {cv['alpha']:.3f}): overestimation {cv['overestimation']:.1f}")
    for e in cv["episodes"]:
        print(f"  episode: {e['steps']} steps, return {e['return_']:.0f}, ended: {e['ended']}; "
              "Q - return-to-go at steps before the end " + ", ".join(
                  f"{k}: {v:+.1f}" for k, v in e["q_minus_return_to_go_before_end"].items()))
    agent.close()
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
