"""``mbrl-fast bench`` end to end on the tiny config: JSON schema, PNG, tables, progress on
stderr, --quick, forced kernel paths (--isa), argument errors. Never timings."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from mbrl_fast.benchmarks import cli, isa, planner

PLANNER_KEYS = {"seconds_per_act", "speedup_vs_mbrl_lib", "speedup_vs_torch_eager",
                "seconds_per_act_min", "speedup_vs_mbrl_lib_min", "times_s", "gflops_at_min",
                "matmul_peak_gflops", "gflops", "pct_of_peak", "matmul_gflop_per_act",
                "decision_quality", "latency_pop100", "batched16", "machine", "config",
                "implementations", "not_measured", "quick", "timing"}
FAST = ["--repeats", "1", "--warmup", "0"]
FORCED = ["portable", "avx2"]  # portable runs wherever _C is built; avx2 maybe not (yet)


@pytest.fixture(scope="module")
def planner_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        lines = []
        mp.setattr(cli, "_log", lines.append)  # the progress lines (stderr in the CLI)
        code = cli.main(["planner", "--config", "tiny", *FAST, "--json", str(out / "r.json"),
                         "--png", str(out / "r.png"), "--isa", ",".join(FORCED)])
    assert code == 0
    return json.loads((out / "r.json").read_text()), out, lines


@pytest.fixture(scope="module")
def planner_result(planner_run):
    return planner_run[:2]


def test_planner_json_schema(planner_result):
    result, _ = planner_result
    assert PLANNER_KEYS <= set(result)
    names = set(planner.row_names(isas=FORCED))
    assert names == set(planner.IMPLEMENTATIONS) | {f"mbrl_fast_fp32_{p}" for p in FORCED}
    for key in ("seconds_per_act", "speedup_vs_mbrl_lib", "gflops", "pct_of_peak"):
        assert set(result[key]) == names
    measured = {n: t for n, t in result["seconds_per_act"].items() if t is not None}
    assert "torch_eager" in measured and all(t > 0 for t in measured.values())
    for n, t in result["seconds_per_act"].items():  # null exactly when not measured
        assert (t is None) == (n in result["not_measured"])
        if t is not None:
            assert result["seconds_per_act_min"][n] == min(result["times_s"][n]) <= t
            assert len(result["times_s"][n]) == 1  # --repeats 1
    assert result["matmul_peak_gflops"] > 0
    assert result["config"]["name"] == "tiny" and result["quick"] is None
    assert result["machine"]["cores"] >= 1
    assert set(result["implementations"]) == set(measured)
    gflop = result["matmul_gflop_per_act"]
    for n, t in measured.items():
        assert math.isclose(result["gflops"][n], gflop / t, rel_tol=1e-9)
        assert math.isclose(result["pct_of_peak"][n],
                            100 * result["gflops"][n] / result["matmul_peak_gflops"], rel_tol=1e-9)
    if result["seconds_per_act"]["mbrl_lib"] is not None:
        t_lib = result["seconds_per_act"]["mbrl_lib"]
        assert math.isclose(result["speedup_vs_mbrl_lib"]["torch_eager"],
                            t_lib / measured["torch_eager"], rel_tol=1e-9)


def test_planner_latency_batched_and_quality(planner_result):
    result, _ = planner_result
    lat = result["latency_pop100"]
    assert lat["population"] == result["config"]["latency_population"]
    assert lat["seconds_per_act"]["torch_eager"] > 0
    batched = result["batched16"]
    assert batched["starts"] == result["config"]["batch_starts"]
    eager = batched["torch_eager"]
    assert math.isclose(eager["batching_speedup"],
                        eager["single_s_per_state"] / eager["batched_s_per_state"], rel_tol=1e-9)
    quality = result["decision_quality"]
    assert "zero_plan" in quality["returns"] and quality["tolerance"] == 0.02
    assert quality["start_states"] == result["config"]["quality_starts"]
    if "mbrl_fast_bf16" in quality["returns"]:
        r32, r16 = quality["returns"]["mbrl_fast_fp32"], quality["returns"]["mbrl_fast_bf16"]
        assert math.isclose(quality["bf16_relative_gap"], (r32 - r16) / abs(r32), rel_tol=1e-9)
        assert quality["bf16_within_tolerance"] == (quality["bf16_relative_gap"] <= 0.02)


def test_planner_png_and_table(planner_result, capsys):
    result, out = planner_result
    assert (out / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = planner.summary_table(result)
    assert "torch_eager" in table and "x mbrl-lib" in table


def test_planner_forced_kernel_rows(planner_result):
    result, _ = planner_result
    for path in FORCED:
        name = f"mbrl_fast_fp32_{path}"
        why = isa.unavailable(path)
        if why is None:  # timed with the variable forced: the row says which path ran
            assert result["implementations"][name]["isa"] == path
            assert result["implementations"][name]["MBRL_FAST_CPU_KERNELS"] == path
            assert result["seconds_per_act"][name] > 0
        else:
            assert result["not_measured"][name] == why and result["seconds_per_act"][name] is None
    assert result["implementations"]["mbrl_fast_reference"]["backend"] == "reference"
    assert result["implementations"]["mbrl_fast_fp32"]["isa"] == result["machine"]["mbrl_fast_isa"]
    table = planner.summary_table(result)
    assert "mbrl_fast_fp32_portable" in table and "mbrl_fast_reference" in table
    assert "MBRL_FAST_CPU_KERNELS" not in __import__("os").environ  # restored after the run


def test_planner_reports_progress(planner_run):
    _, _, lines = planner_run
    text = "\n".join(lines)
    rows = planner.row_names(isas=FORCED)
    for name in rows:  # every row announced, and every measured call reported with times
        assert name in text
    calls = [line for line in lines if "elapsed" in line and " s  [" in line]
    assert any("pop 20" in line and "mbrl_fast_reference" in line and "repeat 1/1" in line
               for line in calls)
    assert any("quality" in line and "plan 1/1" in line for line in calls)
    assert all("left ~" in line for line in calls)
    assert any("running (its first call" in line for line in lines)


def test_planner_quick(tmp_path):
    path = tmp_path / "quick.json"
    assert cli.main(["planner", "--config", "tiny", "--quick", "--json", str(path),
                     "--impl", "torch_eager", "mbrl_fast_reference"]) == 0
    result = json.loads(path.read_text())
    reduced = result["quick"]["reduced"]
    assert reduced["population"] == [20, 10] and reduced["batched_planning"] == "not measured"
    assert reduced["repeats"][0] == 5 and reduced["repeats"][1] in (1, 2)
    assert "quality_starts" not in reduced  # tiny already plans 2 start states
    assert result["config"]["population"] == 10 and result["batched16"] is None
    lat = result["latency_pop100"]
    assert lat["population"] == 10 and lat["seconds_per_act"] == result["seconds_per_act"]
    assert len(result["times_s"]["torch_eager"]) == result["timing"]["repeats"]
    assert planner.summary_table(result).startswith("QUICK RUN (reduced: population 20 -> 10")


def test_quick_stops_repeating_at_its_deadline(monkeypatch, tmp_path):
    monkeypatch.setitem(planner.QUICK, "deadline_s", 0.0)  # no time for a second round
    path = tmp_path / "q.json"
    assert cli.main(["planner", "--config", "tiny", "--quick", "--json", str(path),
                     "--impl", "torch_eager"]) == 0
    result = json.loads(path.read_text())
    assert result["quick"]["reduced"]["repeats"] == [5, 1]
    assert len(result["times_s"]["torch_eager"]) == 1 == result["timing"]["repeats"]


def test_planner_subset_reports_the_rest_as_null(tmp_path):
    path = tmp_path / "eager.json"
    assert cli.main(["planner", "--config", "tiny", *FAST, "--impl", "torch_eager",
                     "--population", "10", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["config"]["population"] == 10
    assert result["seconds_per_act"]["mbrl_lib"] is None
    assert result["speedup_vs_mbrl_lib"]["torch_eager"] is None
    assert result["speedup_vs_torch_eager"]["torch_eager"] == 1.0


def test_ops_quick(tmp_path, capsys):
    path = tmp_path / "ops.json"
    assert cli.main(["ops", "--config", "tiny", "--quick", *FAST, "--json", str(path),
                     "--isa", "auto,portable,avx2"]) == 0
    result = json.loads(path.read_text())
    ops = {r["op"] for r in result["rows"]}
    assert {"ensemble_mlp", "propagate", "noise.normal", "cem_update", "mppi_update",
            "truncated_normal"} <= ops
    for row in result["rows"]:
        assert row["backend"] in ("reference", "cpu")
        if row["backend"] == "reference":  # always available
            assert row["seconds"] > 0 and row["note"] is None
        if row["seconds"] is not None and row["op"] in ("ensemble_mlp", "propagate"):
            assert row["gflops"] > 0 and row["pct_of_peak"] > 0
        if row["seconds"] is None:
            assert row["note"].startswith("unavailable")
        elif row["backend"] == "cpu":
            ref = next(r for r in result["rows"] if r["backend"] == "reference" and all(
                r[k] == row[k] for k in ("op", "dtype", "size")))
            assert math.isclose(row["speedup_vs_reference"], ref["seconds"] / row["seconds"])
            assert row["isa"] in isa.PATHS
    assert result["isas"] == ["auto", "portable", "avx2"]
    cpu = [r for r in result["rows"] if r["backend"] == "cpu" and r["op"] == "propagate"]
    assert len(cpu) == 3 * len([r for r in result["rows"] if r["backend"] == "reference"
                                and r["op"] == "propagate"])
    for row in cpu:
        if row["seconds"] is not None and row["isa"] != result["machine"]["mbrl_fast_isa"]:
            assert row["isa"] in ("portable", "avx2")  # a forced path, named in the row
    assert {r["dtype"] for r in result["rows"] if r["op"] == "ensemble_mlp"} == {"fp32", "bf16"}
    assert "ensemble_mlp" in capsys.readouterr().out


def test_add_parser_attaches_bench_to_a_parent_cli():
    parser = argparse.ArgumentParser(prog="mbrl-fast")
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    args = parser.parse_args(["bench", "planner", "--config", "tiny", "--repeats", "2"])
    assert args.command == "bench" and args.func is cli.run and args.repeats == 2
    assert args.bench_func is cli._run_planner


@pytest.mark.parametrize("argv", [["planner", "--repeats", "0"], ["planner", "--config", "x"],
                                  ["planner", "--warmup", "-1"], ["nope"],
                                  ["planner", "--isa", "sse2"], ["ops", "--isa", ""]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_json_writes_non_finite_as_null(tmp_path):
    path = tmp_path / "x.json"
    cli._write({"a": float("inf"), "b": [1.0, float("nan")], "c": {"d": 2}}, path)
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": {"d": 2}}
