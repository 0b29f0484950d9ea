"""Learning-curve figures: return against environment steps (matplotlib, Agg backend).

Run directories draw their ``learning_curve.png`` with it; bench/ scripts draw several
runs on the same axes."""

from __future__ import annotations

import io


def plot_curves(series: dict[str, list[dict]], title: str, *, target: float | None = None,
                ylabel: str = "return", xlabel: str = "environment steps",
                levels: tuple[float, ...] = (), step_mark: tuple[float, str] | None = None,
                dashed: tuple[str, ...] = (),
                points: dict[str, list[tuple[float, float, float]]] | None = None) -> bytes:
    """PNG bytes: return against env steps, one line per ``series`` entry (label -> metrics
    rows; the labels in ``dashed`` drawn dashed), an optional dashed target line, dotted
    horizontal ``levels``, a vertical ``step_mark`` (x, label), and ``points`` (label ->
    (env steps, mean, error bar) each, e.g. many-episode evaluations of checkpoints) as
    markers with error bars. Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, rows in series.items():
        ax.plot([r["env_steps"] for r in rows], [r["return"] for r in rows], marker="o", ms=3,
                label=label or None, ls="--" if label in dashed else "-")
    for label, marks in (points or {}).items():
        xs, ys, errs = zip(*marks, strict=True) if marks else ((), (), ())
        ax.errorbar(xs, ys, yerr=errs, fmt="D", ms=5, capsize=3, zorder=3, label=label)
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label="target")
    for level in levels:
        ax.axhline(level, color="grey", ls=":", lw=0.8)
    if step_mark is not None:
        ax.axvline(step_mark[0], color="k", ls="-.", lw=0.8, label=step_mark[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    entries = len(ax.get_legend_handles_labels()[1])
    outside = entries > 3  # then below the axes (and the x label), where it hides no curve
    if entries and not outside:
        ax.legend(fontsize=8)
    fig.tight_layout()
    if outside:  # after tight_layout, which would shrink the axes to make room for it
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.16))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight" if outside else None)
    plt.close(fig)
    return buf.getvalue()
