"""``torchvision.datasets.ImageFolder``'s rules for classes and sample order, without torchvision.

Pure functions over names and paths (no file system access): the client's
``image_folder_targets`` lists a folder and hands the listing here; the service's path
list manifests (:func:`sampleplan.core.manifests.labels_from_paths`) name classes with
:func:`class_of_path`. One set of rules for both, so an uploaded folder and a folder read
locally give the same classes.

NOTE [ImageFolder rules] (torchvision ``datasets/folder.py``: ``find_classes``,
``make_dataset``, ``has_file_allowed_extension``)
    - Classes are the names of the root's entries that are directories (``os.scandir``,
      ``entry.is_dir()``, so symlinks to directories and hidden folders count), sorted as
      Python sorts strings; class ``i`` is the ``i``-th. No class folder is an error.
    - Samples: classes in that order; within a class, ``sorted(os.walk(class_dir,
      followlinks=True))`` (directories ordered by their *whole path string*, so ``a b``
      comes before ``a/b``), and within each directory its file names sorted.
    - A file is kept when ``is_valid_file(path)`` says so, or, without it, when
      ``path.lower().endswith(extension)`` for one of ``extensions`` (``IMG_EXTENSIONS``
      by default: case-insensitive, on the whole path). Giving both, or neither, is an
      error (ImageFolder passes its extensions only when ``is_valid_file`` is ``None``).
    - A class folder with no valid file is an error unless ``allow_empty``; with
      ``allow_empty`` it keeps its index and simply has no samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sampleplan.core.errors import InvalidLabels

__all__ = [
    "IMG_EXTENSIONS",
    "class_of_path",
    "has_file_allowed_extension",
    "image_folder_order",
    "sample_sort_key",
]

#: torchvision's ``IMG_EXTENSIONS``: what ``ImageFolder`` keeps without ``is_valid_file``.
IMG_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)


def has_file_allowed_extension(filename: str, extensions: str | Iterable[str]) -> bool:
    """Whether ``filename`` (lower-cased) ends with one of ``extensions``, as torchvision checks."""
    suffixes = extensions if isinstance(extensions, str) else tuple(extensions)
    return filename.lower().endswith(suffixes)


def sample_sort_key(class_name: str, directory: str, filename: str) -> tuple[str, str, str]:
    """Where a file sits in ImageFolder's sample order (NOTE [ImageFolder rules]).

    ``directory`` is the file's folder relative to its class folder, joined with the
    platform's separator (``""`` for files directly in the class folder): ``os.walk``'s
    roots all start with the class folder, so comparing them whole is comparing these.
    """
    return (class_name, directory, filename)


def image_folder_order(
    classes: Sequence[str],
    files: Iterable[tuple[str, str, str]],
    *,
    keep: Callable[[tuple[str, str, str]], bool],
    allow_empty: bool = False,
    extensions: str | Sequence[str] | None = None,
) -> tuple[list[str], list[tuple[str, str, str]], list[int]]:
    """ImageFolder's classes, samples and targets from a listing of a folder tree.

    ``classes`` are the root's directory names (any order); ``files`` are
    ``(class_name, directory, filename)`` triples (any order, ``directory`` as in
    :func:`sample_sort_key`); ``keep`` decides which files are samples. Returns the sorted
    classes, the kept files in ImageFolder's order and each one's class index. Raises
    ``FileNotFoundError`` as torchvision does: no class folder, or a class without a
    valid file unless ``allow_empty`` (``extensions`` only goes into that message).
    """
    ordered = sorted(classes)
    if not ordered:
        raise FileNotFoundError("Couldn't find any class folder.")
    index = {name: i for i, name in enumerate(ordered)}
    samples = sorted(
        (f for f in files if f[0] in index and keep(f)), key=lambda f: sample_sort_key(*f)
    )
    targets = [index[f[0]] for f in samples]
    empty = set(ordered) - {f[0] for f in samples}
    if empty and not allow_empty:
        message = f"Found no valid file for the classes {', '.join(sorted(empty))}. "
        if extensions is not None:
            shown = extensions if isinstance(extensions, str) else ", ".join(extensions)
            message += f"Supported extensions are: {shown}"
        raise FileNotFoundError(message)
    return ordered, samples, targets


def _show(value: str, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def class_of_path(line: str, number: int) -> str:
    """The class of one line of a path list, ``class_name/file`` (line ``number`` for errors).

    Separators are ``/``; a leading ``./`` is dropped; absolute paths and folders are
    refused with :class:`InvalidLabels`.
    """
    path = line[2:] if line.startswith("./") else line
    if path.startswith("/"):
        raise InvalidLabels(
            f"line {number} of the path list is absolute ({_show(line)}); "
            f"list paths relative to the ImageFolder root: class_name/file"
        )
    name, slash, rest = path.partition("/")
    if not slash:
        raise InvalidLabels(
            f"line {number} of the path list ({_show(line)}) has no class folder; "
            f"ImageFolder paths are class_name/file"
        )
    if name in ("", ".", ".."):
        raise InvalidLabels(
            f"line {number} of the path list ({_show(line)}) has no class folder name"
        )
    if not rest or rest.endswith("/"):
        raise InvalidLabels(
            f"line {number} of the path list ({_show(line)}) names a folder, not a file"
        )
    return name
