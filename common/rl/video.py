"""Rollout frames (a list of HxWx3 uint8 arrays) to a GIF or MP4 through imageio
(imageio-ffmpeg for MP4).  Used for figures; callers keep files small (a few
hundred frames at low resolution)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_video(frames, path, fps: int = 20) -> Path:
    import imageio.v2 as imageio

    from common.atomic import atomic_path

    path = Path(path)
    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise ValueError("no frames")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            imageio.mimsave(tmp, frames, format="GIF", duration=1.0 / fps, loop=0)
        else:
            imageio.mimsave(tmp, frames, format="FFMPEG", fps=fps, macro_block_size=1)
    return path
