"""Figure helpers: one style for the hub, atomic saves, headless backend.

matplotlib and seaborn are imported on first use, so that registering the
papers (``python -m registry list``) stays fast."""

from __future__ import annotations

from functools import cache
from pathlib import Path


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
    from common.runs import _atomic_path

    path = Path(path).with_suffix(".png")
    with _atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt().close(fig)
    return path
