"""PNG bar chart of a planner benchmark result (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

COLORS = {"mbrl_fast_fp32": "#1f77b4", "mbrl_fast_bf16": "#2ca02c", "torch_eager": "#ff7f0e",
          "mbrl_lib": "#7f7f7f", "mbrl_fast_reference": "#bcbd22",
          "mbrl_fast_fp32_avx512": "#17becf", "mbrl_fast_fp32_avx2": "#9edae5",
          "mbrl_fast_fp32_portable": "#aec7e8"}


def plot_planner(result: dict, path: str | Path) -> Path:
    """Two panels: seconds per act (log scale; bars: median, black ticks: fastest repeat;
    speedup over mbrl-lib on each bar) and the share of the measured sgemm peak (median).
    Implementations not measured are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = {n: t for n, t in result["seconds_per_act"].items() if t is not None}
    if not seconds:
        raise ValueError("result has no measured implementation to plot")
    names = list(seconds)
    colors = [COLORS.get(n, "#9467bd") for n in names]
    fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(max(11, 1.6 * len(names) + 3), 4.2))

    bars = ax_t.bar(names, [seconds[n] for n in names], color=colors)
    mins = result.get("seconds_per_act_min", {})
    ax_t.scatter(names, [mins.get(n) or seconds[n] for n in names], marker="_", s=400,
                 color="black", zorder=3, label="fastest repeat")
    ax_t.legend(loc="upper left", fontsize=8)
    ax_t.set_yscale("log")
    ax_t.set_ylim(top=max(seconds.values()) * 4)  # room for the labels above the bars
    ax_t.set_ylabel("seconds per planning step (log)")
    cfg = result["config"]
    quick = "QUICK run, " if result.get("quick") else ""
    ax_t.set_title(f"{quick}PETS CEM step: pop {cfg['population']}, {cfg['particles']} "
                   f"particles, H {cfg['horizon']}, {cfg['iterations']} it.", fontsize=10)
    speedup = result.get("speedup_vs_mbrl_lib", {})
    for bar, n in zip(bars, names, strict=True):
        s = speedup.get(n)
        label = f"{seconds[n] * 1e3:.0f} ms" + (f"\n{s:.1f}x" if s is not None else "")
        ax_t.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=8)

    pct = [result["pct_of_peak"].get(n) or 0.0 for n in names]
    ax_p.bar(names, pct, color=colors)
    ax_p.set_ylabel("% of measured fp32 sgemm peak")
    ax_p.set_title(f"useful matmul GFLOP/s vs peak {result['matmul_peak_gflops']:.0f} GFLOP/s",
                   fontsize=10)
    for ax in (ax_t, ax_p):
        ax.tick_params(axis="x", labelrotation=15, labelsize=8)
    machine = result["machine"]
    fig.suptitle(f"{machine['cpu_model']} (family {machine.get('cpu_family')} model "
                 f"{machine.get('cpu_model_number')}), mbrl-fast kernels "
                 f"{machine.get('mbrl_fast_isa')}, {machine['torch_threads']} threads, "
                 f"torch {machine['torch_version']}, {machine['date'][:10]}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
