"""An ``ImageFolder`` tree's classes and targets, listed as torchvision lists them, without it.

The listing (``os.scandir`` for the classes, ``os.walk(followlinks=True)`` for the files)
happens here; the rules that order and filter it are the service core's
(:mod:`sampleplan.core.imagefolder`, NOTE [ImageFolder rules]), shared with the service's
path list manifests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sampleplan.core.imagefolder import (
    IMG_EXTENSIONS,
    has_file_allowed_extension,
    image_folder_order,
)

__all__ = ["IMG_EXTENSIONS", "ImageFolderTargets", "image_folder_targets"]


@dataclass(frozen=True)
class ImageFolderTargets:
    """What ``torchvision.datasets.ImageFolder(root)`` would hold, without loading anything.

    ``samples`` and ``targets`` are in ImageFolder's order: ``samples[i]`` is
    ``(path, class_index)`` with ``path`` as ImageFolder builds it
    (``os.path.join(root, class, ..., file)``), and ``targets[i]`` its class index.
    """

    root: str
    classes: list[str]
    class_to_idx: dict[str, int]
    samples: list[tuple[str, int]]
    targets: list[int]
    relative_paths: list[str] = field(repr=False)

    def __len__(self) -> int:
        return len(self.targets)

    def manifest(self) -> str:
        """The samples as a path list (``class_name/file`` per line, ``/`` separators), the
        body of a ``text/plain`` dataset upload. Paths with a line break cannot be listed."""
        lines = []
        for path in self.relative_paths:
            if "\n" in path or "\r" in path:
                raise ValueError(
                    f"the file {path!r} has a line break in its path, which a path list "
                    f"cannot carry; upload the targets instead (create_dataset(targets))"
                )
            lines.append(path.replace(os.sep, "/") if os.sep != "/" else path)
        return "\n".join(lines) + "\n"


def image_folder_targets(
    root: str | os.PathLike[str],
    *,
    extensions: str | Sequence[str] | None = None,
    is_valid_file: Callable[[str], bool] | None = None,
    allow_empty: bool = False,
) -> ImageFolderTargets:
    """The classes and targets ``torchvision.datasets.ImageFolder(root)`` would give.

    Args:
        root: the folder holding one sub-folder per class.
        extensions: file endings to keep (case-insensitive); default torchvision's
            ``IMG_EXTENSIONS`` when ``is_valid_file`` is not given.
        is_valid_file: ``f(path) -> bool`` deciding which files are samples, given the
            path as ImageFolder builds it; instead of ``extensions``.
        allow_empty: accept class folders with no valid file (they keep their index).

    Raises ``ValueError`` when both ``extensions`` and ``is_valid_file`` are given, and
    ``FileNotFoundError`` as ImageFolder does (no class folder; an empty class).
    """
    if extensions is not None and is_valid_file is not None:
        raise ValueError(
            "Both extensions and is_valid_file cannot be None or not None at the same time"
        )
    directory = os.path.expanduser(os.fspath(root))
    valid: Callable[[str], bool]
    if is_valid_file is None:
        allowed = IMG_EXTENSIONS if extensions is None else extensions
        shown_extensions: str | Sequence[str] | None = allowed

        def valid(path: str) -> bool:
            return has_file_allowed_extension(path, allowed)

    else:
        shown_extensions = None
        valid = is_valid_file
    with os.scandir(directory) as entries:
        classes = [entry.name for entry in entries if entry.is_dir()]
    files: list[tuple[str, str, str]] = []
    for name in classes:
        class_dir = os.path.join(directory, name)
        for walk_root, _dirs, fnames in os.walk(class_dir, followlinks=True):
            sub = os.path.relpath(walk_root, class_dir)
            sub = "" if sub == os.curdir else sub
            files.extend((name, sub, fname) for fname in fnames)

    def full_path(f: tuple[str, str, str]) -> str:
        name, sub, fname = f
        return (
            os.path.join(directory, name, sub, fname)
            if sub
            else os.path.join(directory, name, fname)
        )

    try:
        ordered, kept, targets = image_folder_order(
            classes,
            files,
            keep=lambda f: valid(full_path(f)),
            allow_empty=allow_empty,
            extensions=shown_extensions,
        )
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc} (in {directory})") from exc
    return ImageFolderTargets(
        root=directory,
        classes=ordered,
        class_to_idx={name: i for i, name in enumerate(ordered)},
        samples=[(full_path(f), t) for f, t in zip(kept, targets, strict=True)],
        targets=targets,
        relative_paths=[
            os.path.join(f[0], f[1], f[2]) if f[1] else os.path.join(f[0], f[2]) for f in kept
        ],
    )
