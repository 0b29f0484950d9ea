"""One MBPO epoch on Hopper-v5: mbrl-fast's MBPO agent against mbrl-lib 0.2.0's MBPO, in one run.

    nice -n 5 python bench/mbpo_epoch.py --json bench/results/mbpo_epoch_cpu.json

The same config on both sides (MBPOConfig's Hopper defaults): an ensemble of 7 members
(5 elites), 4 x 200 SiLU, Gaussian head with a learned reward, Adam lr 1e-3, batch 256,
holdout 0.2, at most 25 epochs per round with patience 5; a model round (retrain, then
100,000 branched rollouts of length k from real states, TS1 over the elites, actions
sampled from the policy) every 250 env steps; 20 SAC updates per env step, SAC 2 x 256
ReLU, batch 256, automatic entropy (target -1), target update every step, 5% real data.

What one "round" is, identically on both sides: ``--steps`` env steps (policy actions),
``20 * --steps`` SAC updates (sampling included) and ONE model round (retrain on all real
data, then the rollouts), started after ``initial_random_steps = 5000`` uniform random
steps and one untimed warm-up round (per thread count). A full epoch (1,000 env steps,
four model rounds) is scaled from the measured phases: env loop and SAC x 1000 / steps,
model and rollouts x 1000 / 250. ``issue_literal`` scales with ONE model round per epoch instead
(issue 10 writes "one model retrain"), for reference.

- mbrl-fast: ``mbrl_fast.agents.mbpo.MBPO.run_iteration`` (its epoch loop) with
  ``epoch_length = model_train_freq = --steps`` and the rollout length fixed to k; its
  metrics give the split (update_s, model_s, rollout_s, env_s); its evaluation episode
  (eval_s) is subtracted.
- mbrl-lib: the body of ``mbrl.algorithms.mbpo.train`` (mbrl-lib 0.2.0) on its own
  objects, built from its YAML configs (algorithm/mbpo, overrides/mbpo_hopper,
  dynamics_model/gaussian_mlp_ensemble) with the overrides of ``LIB_OVERRIDES``. Its
  ``train`` itself is not called: it trains the model at the END of each 250-step block
  and has no SAC data before the first one, so a fraction of its first epoch would not
  show steady state; the loop here runs its per-step code in its order (env step, model
  round on the round's first step, then its 20 SAC updates with its logger), without its
  evaluation and without saving the model and data to disk each round.

``env_loop_s`` = round total - SAC - model - rollout (policy act, env.step, buffer adds).
Rounds alternate sides (first side swapped every repeat), so changing load hits both; each
figure is the median over ``--repeats``. torch threads are set per side before each round.

With ``--threads`` >= 2, each timed round is bracketed by two probes of this VM's state
(``bench/vm_speed.py``'s sample: 20 SAC steps on one thread, then on the round's threads;
~0.2 s, untimed): the host at times gives the two vCPUs about one core, and a round's
ratio depends on when that happens (docs/mbpo.md, "This VM's two speeds"). A repeat is
``fast`` when all four of its probes (before and after both sides' rounds) show a speedup
>= ``VM_FAST_SPEEDUP``, ``slow`` when none does, ``mixed`` otherwise; the epoch speedup is
also given per state (``epoch_speedup_by_vm_state``). ``--no-vm-probe`` skips the probes.
In stop 42's run 11 of 12 repeats came out ``mixed``: the state changes faster than a round
lasts (5-35 s), so the labels rarely separate the states; the probes' readings stay in
each round's record (``vm_speedups``).
Run it with nothing else running: beside another process's spinning OpenMP threads the
two-thread probe step took 180 ms against 5.5 on one thread (stop 42), and so would the
rounds' two-thread phases.

``--set KEY=VALUE`` changes our side's config only (e.g. ``sac.precision=bf16``): the
result is then a variant of ours against mbrl-lib's config, not the same config on both
sides, and the JSON records the overrides (``mbrl_fast_overrides``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mbrl_fast.agents.mbpo import MBPO
from mbrl_fast.benchmarks import harness
from mbrl_fast.config import apply_overrides

ENV_ID = "Hopper-v5"
EPOCH_STEPS, MODEL_TRAIN_FREQ, INITIAL_RANDOM = 1000, 250, 5000
PHASES = ("sac_s", "model_s", "rollout_s", "env_loop_s")
# a two-thread SAC step at least this much faster than a one-thread one: both vCPUs present
# (bench/vm_speed.py; stop 41 measured ~1.7x in the fast state and 0.9-1.3x in the slow)
VM_FAST_SPEEDUP = 1.3

# mbrl-lib's mbpo_hopper differs from MBPOConfig's Hopper defaults in these (40 SAC updates
# per step, SAC 2 x 512, target update every 4, fixed alpha, no real data, no epoch cap).
LIB_OVERRIDES = dict(
    env="gym___Hopper-v5", num_steps=125_000, num_sac_updates_per_step=20,
    sac_hidden_size=256, sac_target_update_interval=1, sac_automatic_entropy_tuning=True,
    sac_target_entropy=-1.0, num_epochs_train_model=25, patience=5,
    effective_model_rollouts_per_step=400,  # x freq_train_model 250 = rollout batch 100,000
)


# ---- mbrl-fast ------------------------------------------------------------------------------
class FastSide:
    """The MBPO agent; one round = one run_iteration of ``steps`` env steps."""

    def __init__(self, steps: int, threads: int, overrides: list[str] = ()):
        self.steps = steps
        cfg = MBPO.make_config(
            ENV_ID, steps=10**8, epoch_length=steps, model_train_freq=steps,
            initial_random_steps=INITIAL_RANDOM, torch_threads=threads,
            # the pool holds one real epoch of rounds, as with model_train_freq 250
            model_retain_epochs=EPOCH_STEPS // MODEL_TRAIN_FREQ)
        self.agent = MBPO(apply_overrides(cfg, list(overrides)))
        self.index, self.epochs, self.reference_calls = 0, 0, 0
        train = self.agent.trainer.train

        def counting_train(*a, **kw):
            fit = train(*a, **kw)
            self.epochs = fit.epochs
            return fit

        self.agent.trainer.train = counting_train
        while self.agent.buffer.total_added < INITIAL_RANDOM:  # uniform random steps
            self.agent.run_iteration(self.index)
            self.index += 1

    def round(self, k: int) -> dict:
        propagate_module = importlib.import_module("mbrl_fast.ops.propagate")
        c = self.agent.config
        c.rollout_min_length = c.rollout_max_length = k
        reference = propagate_module.propagate_reference
        calls = [0]

        def counted(*a, **kw):
            calls[0] += 1
            return reference(*a, **kw)

        propagate_module.propagate_reference = counted  # which path ran the rollouts
        try:
            tic = time.perf_counter()
            row = self.agent.run_iteration(self.index)
            total = time.perf_counter() - tic - row["eval_s"]
        finally:
            propagate_module.propagate_reference = reference
        self.index += 1
        out = dict(total_s=total, sac_s=row["update_s"], model_s=row["model_s"],
                   rollout_s=row["rollout_s"], env_step_s=row["env_s"],
                   model_epochs=self.epochs, model_transitions=row["model_transitions"],
                   rollout_path="reference (pure torch)" if calls[0] else "compiled")
        out["env_loop_s"] = total - out["sac_s"] - out["model_s"] - out["rollout_s"]
        return out


# ---- mbrl-lib -------------------------------------------------------------------------------
def lib_config(seed: int = 0):
    """mbrl-lib's MBPO-Hopper config from its own YAML files, with LIB_OVERRIDES."""
    import mbrl
    import omegaconf

    conf = Path(mbrl.__file__).parent / "examples" / "conf"
    load = lambda p: omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.load(conf / p))  # noqa: E731
    algorithm = load("algorithm/mbpo.yaml")
    algorithm.update(real_data_ratio=0.05, random_initial_explore=True,
                     initial_exploration_steps=INITIAL_RANDOM)
    overrides = {**load("overrides/mbpo_hopper.yaml"), **LIB_OVERRIDES}
    return omegaconf.OmegaConf.create(dict(
        algorithm=algorithm, overrides=overrides,
        # hydra 1.3 instantiates recursively by default: GaussianMLP must get its
        # activation_fn_cfg as a config, as under the hydra version mbrl-lib was written for
        dynamics_model={**load("dynamics_model/gaussian_mlp_ensemble.yaml"),
                        "_recursive_": False},
        seed=seed, device="cpu", log_frequency_agent=1000, debug_mode=False))


class LibSide:
    """mbrl-lib's MBPO objects, set up as ``mbrl.algorithms.mbpo.train`` sets them up."""

    def __init__(self, steps: int, rollout_lengths, seed: int = 0):
        import gymnasium as gym
        import hydra.utils
        import mbrl.constants
        import mbrl.env.termination_fns
        import mbrl.models
        import mbrl.planning
        import mbrl.util
        import mbrl.util.common
        from mbrl.algorithms import mbpo
        from mbrl.planning.sac_wrapper import SACAgent

        self.mbpo, self.common, self.steps = mbpo, mbrl.util.common, steps
        self.cfg = cfg = lib_config(seed)
        self.env = env = gym.make(ENV_ID)
        env.reset(seed=seed)
        obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
        mbrl.planning.complete_agent_cfg(env, cfg.algorithm.agent)
        # its yaml builds the action space with _target_ gym.env.Box (gym is not installed,
        # and gymnasium's Box refuses the list bounds): the env's own space is passed instead
        self.agent = SACAgent(hydra.utils.instantiate(cfg.algorithm.agent,
                                                      action_space=env.action_space))
        self.work_dir = tempfile.mkdtemp(prefix="mbpo_epoch_lib_")
        self.logger = mbrl.util.Logger(self.work_dir, enable_back_compatible=True)
        self.logger.register_group(mbrl.constants.RESULTS_LOG_NAME, mbpo.MBPO_LOG_FORMAT,
                                   color="green", dump_frequency=1)
        self.rng = np.random.default_rng(seed=seed)
        generator = torch.Generator(device=cfg.device).manual_seed(seed)
        self.model = self.common.create_one_dim_tr_model(cfg, obs_shape, act_shape)
        self.replay_buffer = self.common.create_replay_buffer(
            cfg, obs_shape, act_shape, rng=self.rng, obs_type=np.double,
            action_type=np.double, reward_type=np.double)
        self.common.rollout_agent_trajectories(
            env, cfg.algorithm.initial_exploration_steps, mbrl.planning.RandomAgent(env), {},
            replay_buffer=self.replay_buffer)
        o = cfg.overrides
        self.rollout_batch = o.effective_model_rollouts_per_step * cfg.algorithm.freq_train_model
        trains_per_epoch = int(np.ceil(EPOCH_STEPS / o.freq_train_model))
        self.model_env = mbrl.models.ModelEnv(env, self.model, mbrl.env.termination_fns.hopper,
                                              None, generator=generator)
        self.trainer = mbrl.models.ModelTrainer(self.model, optim_lr=o.model_lr,
                                                weight_decay=o.model_wd, logger=self.logger)
        train = self.trainer.train
        self.epochs = 0

        def counting_train(*a, **kw):
            losses, scores = train(*a, **kw)
            self.epochs = len(losses)
            return losses, scores

        self.trainer.train = counting_train
        # one SAC buffer per rollout length, as train() sizes it for an epoch with that k
        self.sac_buffers = {k: mbpo.maybe_replace_sac_buffer(
            None, obs_shape, act_shape,
            k * self.rollout_batch * trains_per_epoch * o.num_epochs_to_retain_sac_buffer, seed)
            for k in rollout_lengths}
        self.updates_made = 0

    def round(self, k: int) -> dict:
        """``steps`` iterations of train()'s per-step body; the model round on the first."""
        cfg, o = self.cfg, self.cfg.overrides
        sac_buffer = self.sac_buffers[k]
        sac_s = model_s = rollout_s = 0.0
        tic_total = time.perf_counter()
        obs, _ = self.env.reset()
        terminated = truncated = False
        for step in range(self.steps):
            if terminated or truncated:
                obs, _ = self.env.reset()
            next_obs, _, terminated, truncated, _ = self.common.step_env_and_add_to_buffer(
                self.env, obs, self.agent, {}, self.replay_buffer)
            if step == 0:
                tic = time.perf_counter()
                self.common.train_model_and_save_model_and_data(
                    self.model, self.trainer, o, self.replay_buffer, work_dir=None)
                model_s = time.perf_counter() - tic
                tic = time.perf_counter()
                self.mbpo.rollout_model_and_populate_sac_buffer(
                    self.model_env, self.replay_buffer, self.agent, sac_buffer,
                    cfg.algorithm.sac_samples_action, k, self.rollout_batch)
                rollout_s = time.perf_counter() - tic
            tic = time.perf_counter()
            for _ in range(o.num_sac_updates_per_step):
                use_real_data = self.rng.random() < cfg.algorithm.real_data_ratio
                which_buffer = self.replay_buffer if use_real_data else sac_buffer
                if len(which_buffer) < o.sac_batch_size:
                    break
                self.agent.sac_agent.update_parameters(
                    which_buffer, o.sac_batch_size, self.updates_made, self.logger,
                    reverse_mask=True)
                self.updates_made += 1
                if self.updates_made % cfg.log_frequency_agent == 0:
                    self.logger.dump(self.updates_made, save=True)
            sac_s += time.perf_counter() - tic
            obs = next_obs
        total = time.perf_counter() - tic_total
        return dict(total_s=total, sac_s=sac_s, model_s=model_s, rollout_s=rollout_s,
                    env_loop_s=total - sac_s - model_s - rollout_s, model_epochs=self.epochs,
                    model_transitions=len(sac_buffer))


# ---- this VM's state around each round --------------------------------------------------------
class VMProbe:
    """``bench/vm_speed.py``'s sample on a SAC of its own: one SAC step's median time on one
    thread and on ``threads``, ``updates`` steps each. Call it to get the speedup."""

    def __init__(self, threads: int, updates: int = 20):
        if str(Path(__file__).parent) not in sys.path:  # bench/ holds scripts, not a package
            sys.path.insert(0, str(Path(__file__).parent))
        from sac_update import make_ours, random_transitions
        from vm_speed import sample

        self.threads, self.updates, self.sample = threads, updates, sample
        self.step, _ = make_ours(random_transitions(), "auto", precision="bf16")
        self.a = torch.randn(256, 256)
        self()  # warm up

    def __call__(self) -> float:
        return self.sample(self.step, self.updates, self.threads, self.a)["speedup"]


def vm_state(speedups: list[float]) -> str:
    """``fast`` if every probe saw both vCPUs, ``slow`` if none did, else ``mixed``."""
    fast = [s >= VM_FAST_SPEEDUP for s in speedups]
    return "fast" if all(fast) else "slow" if not any(fast) else "mixed"


def by_vm_state(speedups: list[float], states: list[str]) -> dict:
    """The per-repeat epoch speedups grouped by the repeats' VM state."""
    out = {}
    for state in ("fast", "mixed", "slow"):
        values = [x for x, s in zip(speedups, states, strict=True) if s == state]
        if values:
            out[state] = dict(repeats=len(values), median=round(statistics.median(values), 2),
                              min=min(values), max=max(values))
    return out


# ---- the comparison -------------------------------------------------------------------------
def epoch_estimate(r: dict, steps: int, model_rounds: float) -> dict:
    """A 1,000-step epoch from one round's phases (medians)."""
    per_step = EPOCH_STEPS / steps
    est = dict(sac_s=r["sac_s"] * per_step, env_loop_s=r["env_loop_s"] * per_step,
               model_s=r["model_s"] * model_rounds, rollout_s=r["rollout_s"] * model_rounds)
    est["total_s"] = sum(est.values())
    return {n: round(v, 2) for n, v in est.items()}


def summarize(rounds: dict, steps: int) -> dict:
    med = {side: {n: statistics.median(r[n] for r in rs) for n in ("total_s", *PHASES)}
           for side, rs in rounds.items()}
    out = {"median_round_s": {s: {n: round(v, 3) for n, v in m.items()} for s, m in med.items()},
           "model_s_per_epoch_of_training": {
               s: round(statistics.median(r["model_s"] / max(1, r["model_epochs"]) for r in rs), 4)
               for s, rs in rounds.items()}}
    for name, model_rounds in (("epoch", EPOCH_STEPS / MODEL_TRAIN_FREQ), ("issue_literal", 1)):
        est = {s: epoch_estimate(m, steps, model_rounds) for s, m in med.items()}
        out[f"{name}_estimate_s"] = est
        out[f"{name}_speedup"] = {n: round(est["mbrl_lib"][n] / est["mbrl_fast"][n], 2)
                                  for n in ("total_s", *PHASES)}
    # the ratio per repeat (both sides' rounds of one repeat ran back to back: same load)
    per_rep = [epoch_estimate(b, steps, EPOCH_STEPS / MODEL_TRAIN_FREQ)["total_s"]
               / epoch_estimate(a, steps, EPOCH_STEPS / MODEL_TRAIN_FREQ)["total_s"]
               for a, b in zip(rounds["mbrl_fast"], rounds["mbrl_lib"], strict=True)]
    out["epoch_speedup_per_repeat"] = [round(x, 2) for x in per_rep]
    out["epoch_speedup_median_of_repeats"] = round(statistics.median(per_rep), 2)
    probes = [a.get("vm_speedups", []) + b.get("vm_speedups", [])
              for a, b in zip(rounds["mbrl_fast"], rounds["mbrl_lib"], strict=True)]
    if all(probes):
        out["vm_state_per_repeat"] = [vm_state(p) for p in probes]
        out["epoch_speedup_by_vm_state"] = by_vm_state(out["epoch_speedup_per_repeat"],
                                                       out["vm_state_per_repeat"])
    out["speedup_per_phase_round"] = {n: round(med["mbrl_lib"][n] / med["mbrl_fast"][n], 2)
                                      for n in ("total_s", *PHASES)}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50, help="env steps per timed round")
    p.add_argument("--rollout-lengths", type=int, nargs="+", default=[1, 15])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of mbrl-fast's config only, e.g. sac.precision=bf16 "
                        "(a variant of ours, not the same config on both sides)")
    p.add_argument("--no-vm-probe", action="store_true",
                   help="do not probe this VM's state around each round (threads >= 2)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    torch.set_num_threads(args.threads[0])
    load_start = harness.load()
    tic = time.perf_counter()
    fast = FastSide(args.steps, args.threads[0], args.set)
    lib = LibSide(args.steps, args.rollout_lengths)
    log(f"set up, {INITIAL_RANDOM} random steps each: {time.perf_counter() - tic:.0f} s")
    result = dict(
        what="one MBPO epoch on Hopper-v5 (1,000 env steps, 20 SAC updates per step, a "
             "model round every 250 steps), mbrl-fast's MBPO agent vs mbrl-lib 0.2.0's MBPO",
        command="python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:]),
        how=__doc__.split("\n\n", 2)[2].strip(),
        steps_per_round=args.steps, sac_updates_per_round=20 * args.steps,
        scaling=f"epoch = (env loop + SAC) x {EPOCH_STEPS}/{args.steps} + (model + rollout) x "
                f"{EPOCH_STEPS // MODEL_TRAIN_FREQ}",
        repeats=args.repeats, rollout_lengths=args.rollout_lengths,
        vm_fast_speedup=VM_FAST_SPEEDUP,
        mbrl_fast_overrides=args.set,
        mbrl_fast_config=_jsonable(vars(fast.agent.config)),
        mbrl_lib_config=_to_container(lib.cfg), load_at_start=load_start, variants=[])
    for threads in args.threads:
        for side in (fast, lib):  # an untimed warm-up round per thread count
            torch.set_num_threads(threads)
            side.round(args.rollout_lengths[0])
        probe = None if args.no_vm_probe or threads < 2 else VMProbe(threads)
        log(f"threads {threads}: warmed up")
        rounds = {(k, s): [] for k in args.rollout_lengths for s in ("mbrl_fast", "mbrl_lib")}
        load_before = harness.load()
        for rep in range(args.repeats):
            for k in args.rollout_lengths:
                order = [("mbrl_fast", fast), ("mbrl_lib", lib)][:: 1 if rep % 2 == 0 else -1]
                for name, side in order:
                    before = probe() if probe else None
                    torch.set_num_threads(threads)
                    r = side.round(k)
                    if probe:
                        r["vm_speedups"] = [before, probe()]
                    rounds[(k, name)].append(r)
                    log(f"threads {threads} k {k} repeat {rep} {name}: "
                        + ", ".join(f"{n} {v:.2f}" if isinstance(v, float) else f"{n} {v}"
                                    for n, v in r.items()))
        for k in args.rollout_lengths:
            rs = {s: rounds[(k, s)] for s in ("mbrl_fast", "mbrl_lib")}
            v = dict(threads=threads, rollout_length=k, load_before=load_before,
                     load_after=harness.load(), **summarize(rs, args.steps),
                     rounds={s: [{n: (round(x, 4) if isinstance(x, float) else x)
                                  for n, x in r.items()} for r in rr] for s, rr in rs.items()})
            v["target_3x_met"] = v["epoch_speedup"]["total_s"] >= 3.0
            result["variants"].append(v)
            log(json.dumps({key: v[key] for key in ("threads", "rollout_length",
                                                    "epoch_estimate_s", "epoch_speedup")}))
    result["machine"] = harness.machine_info()
    if args.json:
        harness.write_json(args.json, result)
        log(f"wrote {args.json}")
    return result


def _to_container(cfg):
    import omegaconf

    return omegaconf.OmegaConf.to_container(cfg, resolve=True)


def _jsonable(x):
    if hasattr(x, "__dataclass_fields__"):
        return _jsonable(vars(x))
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x if isinstance(x, (int, float, str, bool, type(None))) else repr(x)


if __name__ == "__main__":
    main()
