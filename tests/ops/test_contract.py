"""The op contract's structure (issue 15): one leaf contract module, launchers that never
import an op module, no import cycle in mbrl_fast/ops, no imports hidden inside functions
(except optional dependencies), and one capability table with a launcher for every entry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from mbrl_fast import backends
from mbrl_fast.ops import registry
from mbrl_fast.ops.contract import Reward, RewardKind

OPS = Path(__file__).resolve().parents[2] / "mbrl_fast" / "ops"
OP_MODULES = {"ensemble_mlp", "propagate", "elite_update", "samplers", "noise", "imagine",
              "skill_reward", "registry"}
LAUNCHERS = {"_cpu", "_cpu_imagine", "_cuda", "_launch", "_triton.ensemble_mlp",
             "_triton.propagate", "_triton.noise", "_triton.elite_update"}
OPTIONAL = {"triton", "numba"}  # may be imported inside functions


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in OPS.rglob("*.py"):
        name = ".".join(path.relative_to(OPS).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text())
    return out


def _ops_imports(tree: ast.Module, top_level_only: bool) -> set[str]:
    """mbrl_fast.ops modules imported (names relative to mbrl_fast.ops)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("mbrl_fast.ops"):
            base = node.module.removeprefix("mbrl_fast.ops").lstrip(".")
            for alias in node.names:  # `from mbrl_fast.ops import noise` imports a module
                sub = f"{base}.{alias.name}".lstrip(".")
                found.add(sub if (OPS / (sub.replace(".", "/") + ".py")).exists()
                          or (OPS / sub.replace(".", "/")).is_dir() else base)
    return {f for f in found if f}


def test_launchers_and_contract_never_import_an_op_module():
    mods = _modules()
    for name in LAUNCHERS | {"contract", "features", "rewards"}:
        bad = _ops_imports(mods[name], top_level_only=False) & OP_MODULES
        assert not bad, f"mbrl_fast/ops/{name} imports op modules {sorted(bad)}"


def test_no_import_cycle_in_ops():
    mods = _modules()
    graph = {name: _ops_imports(tree, top_level_only=False) - {name} for name, tree in mods.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        if state.get(node) == 1:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in graph.get(node, ()):
            if dep in graph:
                visit(dep, path + [node])
        state[node] = 2

    for name in graph:
        visit(name, [])


def test_no_imports_inside_functions_except_optional_dependencies():
    for name, tree in _modules().items():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    roots = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    roots = {(node.module or "").split(".")[0]}
                else:
                    continue
                assert roots <= OPTIONAL, f"ops/{name}.{fn.name} imports {roots} inside a function"


def test_every_capability_has_a_launcher():
    ops = {f for f in backends.CAPABILITIES if "." not in f}  # the rest are features
    assert {"imagine", "skill_reward", "colored_noise"} <= ops
    for op in sorted(ops):
        for backend in backends.CAPABILITIES[op]:
            if backend == "triton":
                pytest.importorskip("triton")
            assert callable(registry.launcher(op, backend)), (op, backend)
    with pytest.raises(KeyError):
        registry.launcher("colored_noise", "cuda")


def test_available_reports_the_capability_table():
    status = backends.available()
    for name in backends.BACKENDS:
        assert status[name].capabilities == backends.capabilities(name)
    assert "colored_noise" in status["cpu"].capabilities
    assert "propagate.policy" in status["cpu"].capabilities
    assert set(status["reference"].capabilities) == set(backends.CAPABILITIES)


def test_reward_fusion_is_per_backend():
    torch_fn = lambda o, a, n: o[..., 0]  # noqa: E731
    cheetah = Reward("c", torch_fn, kind=RewardKind.HALFCHEETAH, dt=0.05)
    callback = Reward("cb", torch_fn, address=1)
    plain = Reward("plain", torch_fn)
    assert callback.kind == RewardKind.CALLBACK
    assert all(cheetah.fused_on(b) for b in ("cpu", "cuda", "triton"))
    assert callback.fused_on("cpu") and not callback.fused_on("cuda")
    assert not callback.fused_on("triton") and not any(
        plain.fused_on(b) for b in backends.BACKENDS)
    with pytest.raises(ValueError, match="needs a function address"):
        Reward("x", torch_fn, kind=RewardKind.CALLBACK)


def test_auto_on_a_cuda_device_follows_the_measured_per_op_order(monkeypatch):
    """Where both GPU backends run a call, auto takes the one measured faster for that op
    (backends._GPU_PREFERENCE_BY_OP: Triton for ensemble_mlp), else CUDA; a backend the call
    cannot use is passed over. Runs without a GPU: availability is stubbed."""
    monkeypatch.setattr(backends, "is_available", lambda name: True)
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    cuda = torch.device("cuda")
    both = ("cuda", "triton")
    assert backends.select("auto", cuda, both, "ensemble_mlp") == "triton"
    assert backends.select("auto", cuda, ("cuda",), "ensemble_mlp") == "cuda"
    for op in ("propagate", "cem_update", "mppi_update", "noise"):
        assert backends.select("auto", cuda, both, op) == "cuda", op
    assert backends.select("auto", cuda, ("triton",), "propagate") == "triton"
    assert backends.select("auto", cuda, (), "propagate") == "reference"
