"""What DADS's skills are worth: their coverage, q's error on them, zero-shot navigation.

    skill_coverage   64 evenly spaced skills (an 8 x 8 grid of [-1, 1]^2), each run by the
                     deterministic policy from the same start: their x-y trajectories, the
                     directions of their 10-step displacements (angular coverage: the largest
                     gap between directions, and how many of 16 equal sectors hold one), and
                     q's prediction of those displacements (the latent planner's rollout,
                     one ops.propagate call) against what the env did
    navigate         N goals at once (one env each): every H_Z steps the latent planner
                     (planning/skills.py) picks a skill per env in one batched call, the
                     policy executes it; the final distance against the initial one
    evaluate_goals   both, a PNG (the skills' trajectories, one colour per skill; the
                     navigation paths) and a JSON next to it

A goal is drawn at a distance U[goal_radius] from the env's start, in a uniform
direction; it is reached when the final distance <= success_ratio x the initial one.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from mbrl_fast.agents.base import step_active
from mbrl_fast.ops.propagate import propagate
from mbrl_fast.planning.skills import goal_reward

SECTORS = 16


def xy_coords(agent) -> tuple[list[int], list[int]]:
    """(x-y indices in the observation, x-y indices in q's rollout state)."""
    feats = agent.task.obs_features
    xy = list(feats.drop[:2]) if feats is not None and len(feats.drop) >= 2 else [0, 1]
    predicted = list(agent.q.predicted)
    missing = [i for i in xy if i not in predicted]
    if missing:
        raise ValueError(f"q does not predict the x-y coordinates {missing}: goals need them")
    return xy, [predicted.index(i) for i in xy]


def random_goals(agent, count: int, seed: int) -> np.ndarray:
    """[count, 2] offsets from the start: distance U[goal_radius], direction uniform."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of goals must be an int >= 1, got {count!r}")
    low, high = agent.config.goal_radius
    rng = np.random.default_rng([seed, 77])
    angle = rng.uniform(0.0, 2 * math.pi, count)
    radius = rng.uniform(low, high, count)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def make_envs(agent, count: int, steps: int):
    """``count`` envs of the agent's task whose episodes last ``steps`` steps."""
    kwargs = {**agent.config.env_kwargs, "max_episode_steps": steps}
    return [agent.task.make_env(**kwargs) for _ in range(count)]


@contextlib.contextmanager
def env_batch(agent, envs, count: int, steps: int):
    """``envs`` as given, or ``count`` new ones (closed on exit)."""
    if envs is not None:
        yield envs
        return
    made = make_envs(agent, count, steps)
    try:
        yield made
    finally:
        for env in made:
            env.close()


def run_skills(agent, skills: np.ndarray, steps: int, seed: int, envs=None,
               on_frame=None) -> np.ndarray:
    """Each skill [K, Z] run by the deterministic policy from reset(seed): x-y [K, steps + 1, 2]
    (a terminated episode holds its last position)."""
    with env_batch(agent, envs, len(skills), steps) as envs:
        return _run_skills(agent, skills, steps, seed, envs, on_frame)


def _run_skills(agent, skills, steps, seed, envs, on_frame) -> np.ndarray:
    xy, _ = xy_coords(agent)
    dtype = envs[0].action_space.dtype
    obs = np.stack([e.reset(seed=seed)[0] for e in envs])
    active = np.ones(len(envs), bool)
    path = [obs[:, xy].copy()]
    for _ in range(steps):
        act = agent.act(obs, skills, deterministic=True)
        step_active(envs, obs, act, active, dtype=dtype, on_step=_first_env(on_frame, envs))
        path.append(obs[:, xy].copy())
    return np.stack(path, axis=1)


def _first_env(on_frame, envs):
    """An on_step that renders env 0's frames into ``on_frame`` (None without one)."""
    if on_frame is None:
        return None
    return lambda i, *_: on_frame(envs[0]) if i == 0 else None


def skill_coverage(agent, seed: int = 0, steps: int | None = None, grid: int = 8) -> dict:
    """The 64 evenly spaced skills' trajectories and 10-step displacements (module doc)."""
    z = agent.config.skill_dim
    if z == 2:
        axis = np.linspace(-1.0, 1.0, grid)
        skills = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    else:
        skills = np.random.default_rng([seed, 64]).uniform(-1.0, 1.0, (grid * grid, z))
    hz = agent.config.planner.skill_horizon
    steps = max(hz, steps if steps is not None else agent.episode_steps)
    paths = run_skills(agent, skills, steps, seed)
    disp = paths[:, hz] - paths[:, 0]  # [K, 2] the real 10-step displacements
    env = agent.task.make_env(**agent.config.env_kwargs)
    start = env.reset(seed=seed)[0]
    env.close()
    _, rxy = xy_coords(agent)
    s0 = agent.q.rollout_state(np.repeat(start[None], len(skills), axis=0))
    actions = torch.as_tensor(skills, dtype=torch.float32)[:, None, None].expand(
        -1, 1, hz, -1).contiguous()
    with torch.no_grad():
        states = propagate(agent.q.mlp_params(), s0, actions, particles=1,
                           mode="expectation").states[:, 0, 0]
    pred = (states[:, -1, rxy] - states[:, 0, rxy]).numpy()
    size = np.linalg.norm(disp, axis=1)
    moving = size > 0.1 * size.max() if size.max() > 0 else np.zeros(len(size), bool)
    angles = np.sort(np.arctan2(disp[moving, 1], disp[moving, 0]))
    if len(angles):
        gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi]))
        max_gap = float(np.degrees(gaps.max()))
        sectors = np.unique(((angles + math.pi) // (2 * math.pi / SECTORS)).astype(int) % SECTORS)
    else:
        max_gap, sectors = 360.0, np.array([], int)
    return {"skills": skills, "paths": paths, "displacement": disp, "predicted": pred,
            "max_angular_gap_deg": max_gap, "sectors_covered": int(len(sectors)),
            "sectors": SECTORS, "moving_skills": int(moving.sum()),
            "mean_displacement": float(size.mean()),
            "prediction_error": float(np.linalg.norm(pred - disp, axis=1).mean()
                                      / max(size.mean(), 1e-12))}


def navigate(agent, offsets: np.ndarray, *, seed: int, envs=None, on_frame=None,
             steps: int | None = None) -> dict:
    """Zero-shot navigation to goals start + offsets [N, 2], N envs in one batch."""
    steps = steps if steps is not None else agent.config.goal_steps
    with env_batch(agent, envs, len(offsets), steps) as envs:
        return _navigate(agent, offsets, seed, envs, on_frame, steps)


def _navigate(agent, offsets, seed, envs, on_frame, steps) -> dict:
    c = agent.config
    xy, rxy = xy_coords(agent)
    n = len(offsets)
    dtype = envs[0].action_space.dtype
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    goals = obs[:, xy] + offsets
    reward = goal_reward(torch.as_tensor(goals, dtype=torch.float32), coords=rxy)
    agent.planner.reset(seed)
    active = np.ones(n, bool)
    returns = np.zeros(n)
    paths, chosen = [obs[:, xy].copy()], []
    for t in range(steps):
        if t % c.planner.skill_horizon == 0:
            skill = agent.planner.plan(obs, reward).numpy()
            chosen.append(skill)
        act = agent.act(obs, skill, deterministic=True)
        step_active(envs, obs, act, active, dtype=dtype, on_step=_first_env(on_frame, envs))
        returns -= np.linalg.norm(obs[:, xy] - goals, axis=1)
        paths.append(obs[:, xy].copy())
        if not active.any():
            break
    d0 = np.linalg.norm(offsets, axis=1)
    final = np.linalg.norm(obs[:, xy] - goals, axis=1)
    ratio = final / np.maximum(d0, 1e-12)
    return {"goals": goals, "paths": np.stack(paths, axis=1), "skills": np.stack(chosen, 1),
            "initial_distance": d0, "final_distance": final, "ratio": ratio,
            "returns": returns, "success": float(np.mean(ratio <= c.success_ratio)),
            "mean_ratio": float(ratio.mean()), "steps": len(paths) - 1}


def evaluate_goals(agent, goals: int, seed: int = 10_000, out=None) -> dict:
    """Coverage + navigation to ``goals`` random goals; JSON + PNG at ``out`` (no suffix)."""
    c = agent.config
    cov = skill_coverage(agent, seed)
    nav = navigate(agent, random_goals(agent, goals, seed), seed=seed)
    summary = {
        "env_id": c.env_id, "iterations": agent.iterations_done,
        "env_steps": agent.history[-1]["env_steps"] if agent.history else 0,
        "wall_clock_s": agent.wall_clock_s, "goals": goals, "seed": seed,
        "goal_radius": list(c.goal_radius), "goal_steps": nav["steps"],
        "success_ratio": c.success_ratio,
        "success": nav["success"], "mean_final_over_initial": nav["mean_ratio"],
        "final_over_initial": [round(float(r), 4) for r in nav["ratio"]],
        "initial_distance": [round(float(d), 3) for d in nav["initial_distance"]],
        "final_distance": [round(float(d), 3) for d in nav["final_distance"]],
        "skills_max_angular_gap_deg": round(cov["max_angular_gap_deg"], 1),
        "skills_sectors_covered": f"{cov['sectors_covered']} of {cov['sectors']}",
        "skills_moving": f"{cov['moving_skills']} of {len(cov['skills'])}",
        "skills_mean_10_step_displacement": round(cov["mean_displacement"], 4),
        "skill_dynamics_10_step_error": round(cov["prediction_error"], 4),
        "planner": {k: getattr(c.planner, k) for k in c.planner.__dataclass_fields__},
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
        try:
            out.with_suffix(".png").write_bytes(plot(agent, cov, nav, summary))
            summary["png"] = str(out.with_suffix(".png"))
        except ImportError:  # no matplotlib: the JSON only
            pass
        summary["json"] = str(out.with_suffix(".json"))
    return summary


def plot(agent, cov: dict, nav: dict, summary: dict) -> bytes:
    """PNG bytes: the skills' x-y trajectories (one colour per skill), the navigation paths."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5.6))
    colours = plt.cm.hsv(np.linspace(0, 1, len(cov["skills"]), endpoint=False))
    for k, path in enumerate(cov["paths"]):
        a1.plot(path[:, 0], path[:, 1], color=colours[k], lw=1)
        a1.plot(*path[-1], "o", color=colours[k], ms=2.5)
    a1.set_title(f"{len(cov['skills'])} skills (8x8 grid of z), {cov['paths'].shape[1] - 1} "
                 f"steps each\n10-step directions: {summary['skills_sectors_covered']} sectors, "
                 f"max gap {summary['skills_max_angular_gap_deg']} deg", fontsize=9)
    a1.set_aspect("equal")
    colours = plt.cm.tab20(np.linspace(0, 1, len(nav["goals"])))
    for i, path in enumerate(nav["paths"]):
        ok = nav["ratio"][i] <= summary["success_ratio"]
        a2.plot(path[:, 0], path[:, 1], color=colours[i], lw=1, ls="-" if ok else "--")
        a2.plot(*nav["goals"][i], "*", color=colours[i], ms=11, mec="k", mew=0.5)
        a2.plot(*path[0], "k.", ms=4)
    a2.set_title(f"zero-shot navigation: {summary['success']:.0%} of {len(nav['goals'])} goals "
                 f"within {summary['success_ratio']:.0%} of the initial distance\n(dashed: "
                 f"missed; mean final / initial {summary['mean_final_over_initial']:.3f})",
                 fontsize=9)
    a2.set_aspect("equal")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.suptitle(f"DADS {summary['env_id']}: {summary['env_steps']} env steps, "
                 f"{summary['wall_clock_s'] / 60:.1f} min of training", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
