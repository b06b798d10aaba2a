"""Frames decoded from a source video, for exports that lack their frames.

OpenCV (already a FiftyOne dependency) decodes the video once, front to
back, keeping only the wanted frame indices: sequential ``grab()`` is exact
on every codec, whereas seeking by frame number is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dataops.errors import InputError


def resolve_video(video: Path, video_name: str) -> Path | None:
    """The video file for an export: ``video`` itself, or the file named
    ``video_name`` inside the folder ``video`` (None when there is none)."""
    if video.is_dir():
        candidate = video / Path(video_name).name
        return candidate if candidate.is_file() else None
    return video if video.is_file() else None


def extract_frames(video: Path, indices: Sequence[int], out_dir: Path) -> dict[int, Path]:
    """Decodes the given frames of a video into JPEG files.

    Args:
        video: the video file
        indices: frame indices wanted (0-based)
        out_dir: folder for ``frame_<index>.jpg``

    Returns:
        frame index -> image path, for the indices the video has

    Raises:
        InputError: the file cannot be opened as a video
    """
    import cv2

    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    if not wanted:
        return {}
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise InputError(video, "cannot be opened as a video")
    out_dir.mkdir(parents=True, exist_ok=True)
    found: dict[int, Path] = {}
    try:
        position = 0
        for index in wanted:
            while position < index:
                if not capture.grab():
                    return found
                position += 1
            ok, image = capture.read()
            position += 1
            if not ok:
                return found
            path = out_dir / f"frame_{index:06d}.jpg"
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            found[index] = path
    finally:
        capture.release()
    return found
