"""The paper's figures as PNGs (matplotlib, Agg backend, no display needed).

* `verb_noun_pie`: two-ring nested pie (Self-Instruct / GPT-4-LLM Fig. 2 style) — inner ring
  the top verbs, outer ring each verb's top nouns, in the verb's colour family;
* `pair_bars`: horizontal bars of the most frequent verb–noun pairs;
* `compare_pair_bars`: the same pairs for two datasets side by side (paper Fig. 3c);
* `length_hist`: histogram of lengths, overlaid for several datasets (paper Fig. 3d).

Every function returns the path it wrote; figures are closed after saving (no leaks over many
datasets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

PALETTE = [
    "#4C72B0",
    "#DD8452",
    "#55A868",
    "#C44E52",
    "#8172B3",
    "#937860",
    "#DA8BC3",
    "#8C8C8C",
    "#CCB974",
    "#64B5CD",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", facecolor="white")
    tmp.replace(path)
    _plt().close(fig)
    return path


def _no_data(path: Path, title: str, message: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.set_title(title, fontsize=12)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    return _save(fig, path)


@dataclass
class _Ring:
    """One ring of the verb–noun pie: how it is drawn, and its wedges."""

    radius: float
    width: float
    edge: float  # width of the white line between wedges
    font: float
    label_distance: float
    label_share: float  # a wedge is labelled from this share of the pie (when the label fits)
    bold: bool = False
    sizes: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    colors: list = field(default_factory=list)

    def add(self, size: int, label: str, color: object) -> None:
        self.sizes.append(size)
        self.labels.append(label)
        self.colors.append(color)

    def draw(self, ax, total: int) -> None:
        ax.pie(
            self.sizes,
            radius=self.radius,
            colors=self.colors,
            startangle=90,
            counterclock=False,
            labels=[
                lab if s / total >= self.label_share else ""
                for lab, s in zip(self.labels, self.sizes, strict=True)
            ],
            labeldistance=self.label_distance,
            rotatelabels=True,
            textprops={"fontsize": self.font, **({"fontweight": "bold"} if self.bold else {})},
            wedgeprops={"width": self.width, "edgecolor": "white", "linewidth": self.edge},
        )


def verb_noun_pie(top: list[dict], path: Path, title: str) -> Path:
    """Inner ring: the top verbs; outer ring: each verb's top nouns (wedges sized by the
    counts of the shown verb–noun pairs, as Self-Instruct's figure)."""
    if not top:
        return _no_data(path, title, "no verb–noun pairs found")
    import matplotlib.colors as mcolors

    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 11))
    inner = _Ring(
        radius=0.68, width=0.4, edge=1.2, font=10, bold=True, label_distance=0.62, label_share=0.012
    )
    outer = _Ring(
        radius=1.0, width=0.32, edge=0.8, font=8.5, label_distance=0.84, label_share=0.007
    )
    cmap = plt.get_cmap("tab20")
    for k, item in enumerate(top):
        base = cmap(k % 20)
        # As Self-Instruct's sunburst: a verb's wedge is the sum of its shown pairs, so the
        # top nouns fill it and stay readable (the verb's full count is in the table).
        shown = sum(n["count"] for n in item["nouns"])
        if shown == 0:
            continue
        inner.add(shown, item["verb"], base)
        for j, n in enumerate(item["nouns"]):
            rgb = mcolors.to_rgb(base)
            mix = 0.2 + 0.55 * j / max(1, len(item["nouns"]))
            outer.add(n["count"], n["noun"], tuple(c + (1 - c) * mix for c in rgb))
    total = sum(outer.sizes)
    outer.draw(ax, total)
    inner.draw(ax, total)
    ax.set(aspect="equal")
    ax.set_title(title, fontsize=15, pad=12)
    return _save(fig, path)


def pair_bars(pairs: list[dict], path: Path, title: str, color: str = PALETTE[0]) -> Path:
    if not pairs:
        return _no_data(path, title, "no verb–noun pairs found")
    plt = _plt()
    labels = [f"{p['verb']} · {p['noun']}" for p in pairs][::-1]
    counts = [p["count"] for p in pairs][::-1]
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.32 * len(pairs) + 1.2)))
    bars = ax.barh(labels, counts, color=color)
    ax.bar_label(bars, padding=3, fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("records")
    ax.set_title(title, fontsize=12)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.12)
    ax.tick_params(axis="y", labelsize=9)
    return _save(fig, path)


def compare_pair_bars(
    names: list[str],
    counts: dict[str, list[int]],
    labels: list[str],
    path: Path,
    title: str,
    normalise: bool = False,
) -> Path:
    """Grouped horizontal bars: one group per verb–noun pair, one bar per dataset."""
    if not labels:
        return _no_data(path, title, "no verb–noun pairs found")
    import numpy as np

    plt = _plt()
    n = len(names)
    height = 0.8 / n
    y = np.arange(len(labels))[::-1]
    fig, ax = plt.subplots(figsize=(9, max(3.5, 0.42 * len(labels) + 1.5)))
    for k, name in enumerate(names):
        ax.barh(
            y + (n - 1 - 2 * k) * height / 2,
            counts[name],
            height=height,
            label=name,
            color=PALETTE[k % len(PALETTE)],
        )
    ax.set_yticks(y, labels, fontsize=9)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("share of records (%)" if normalise else "records")
    ax.set_title(title, fontsize=12)
    ax.legend(loc="lower right", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def length_hist(
    series: dict[str, list[int]],
    path: Path,
    title: str,
    unit: str,
    bins: int = 40,
    clip_quantile: float = 0.99,
) -> Path:
    """Histogram of lengths; several datasets overlay with transparency. The x axis stops at
    the `clip_quantile` of all values (a few very long texts would squash the picture); the
    count beyond it is written on the plot."""
    values = [v for vals in series.values() for v in vals]
    if not values:
        return _no_data(path, title, "no texts")
    import numpy as np

    plt = _plt()
    hi = float(np.quantile(values, clip_quantile)) if len(values) > 20 else float(max(values))
    hi = max(hi, 1.0)
    edges = np.linspace(0, math.ceil(hi) + 1, bins + 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (name, vals) in enumerate(series.items()):
        arr = np.asarray(vals)
        ax.hist(
            arr[arr <= edges[-1]],
            bins=edges,
            alpha=0.55 if len(series) > 1 else 0.85,
            label=f"{name} (n={len(vals)}, median {np.median(arr):.0f})",
            color=PALETTE[k % len(PALETTE)],
            edgecolor="white",
            linewidth=0.4,
        )
    beyond = sum(1 for v in values if v > edges[-1])
    if beyond:
        ax.text(
            0.98,
            0.70,
            f"{beyond} beyond {edges[-1]:.0f} not shown",
            transform=ax.transAxes,
            ha="right",
            fontsize=8,
            color="#555",
        )
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"length ({unit})")
    ax.set_ylabel("records")
    ax.set_title(title, fontsize=12)
    ax.legend(frameon=False, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)
