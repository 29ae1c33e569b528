"""Figure helpers: one style for the hub, atomic saves, headless backend.

matplotlib and seaborn are imported on first use, so that registering the
papers (``python -m registry list``) stays fast."""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

_WATERMARK: list[str | None] = [None]


@contextlib.contextmanager
def watermark(text: str | None):
    """Stamp ``text`` across every figure saved inside (e.g. "smoke: not a result")."""
    _WATERMARK.append(text)
    try:
        yield
    finally:
        _WATERMARK.pop()


@cache
def plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: figures are files
    import matplotlib.pyplot as pyplot
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    return pyplot


def subplots(*args, **kwargs):
    kwargs.setdefault("constrained_layout", True)
    return plt().subplots(*args, **kwargs)


def save(fig, path: Path, dpi: int = 130) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    from common.atomic import atomic_path

    if _WATERMARK[-1]:
        fig.text(0.5, 0.5, _WATERMARK[-1], ha="center", va="center", rotation=25,
                 fontsize=28, color="red", alpha=0.35, fontweight="bold", zorder=100)
    path = Path(path).with_suffix(".png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt().close(fig)
    return path


def prediction_grid(rows, labels, title: str, label_size: float = 8):
    """A grid of grey images in [0, 1]: one row per ``(name, images (N, 1, H, W),
    predictions (N,))``, one column per sample, each titled by its predicted class
    (red where it differs from ``labels``).  Returns the figure."""
    n = len(labels)
    fig, axes = subplots(len(rows), n, figsize=(1.1 * n, 1.35 * len(rows)), squeeze=False)
    for r, (name, images, pred) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(images[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ok = int(pred[c]) == int(labels[c])
            ax.set_title(str(int(pred[c])), fontsize=8, color="black" if ok else "red")
            if c == 0:
                ax.set_ylabel(name, fontsize=label_size)
    fig.suptitle(title, fontsize=9)
    return fig
