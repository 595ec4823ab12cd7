"""``image_folder_targets`` and ``create_dataset_from_folder`` against torchvision's rules.

The oracle is torchvision's ``datasets/folder.py`` (``find_classes``, ``make_dataset``,
``has_file_allowed_extension``), transcribed below from its text: it is not installed in
the project's virtualenv (it would replace the pinned torch). Where torchvision does
import, the same trees are checked against ``ImageFolder`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sampleplan.client import AsyncSamplePlanClient, SamplePlanClient, image_folder_targets
from sampleplan.core.imagefolder import IMG_EXTENSIONS
from tests.helpers.servers import LiveServer

# -- torchvision's rules, transcribed (torchvision/datasets/folder.py) -------------------------

TV_IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def tv_has_file_allowed_extension(filename: str, extensions: Any) -> bool:
    return filename.lower().endswith(
        extensions if isinstance(extensions, str) else tuple(extensions)
    )


def tv_find_classes(directory: str) -> tuple[list[str], dict[str, int]]:
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
    return classes, {name: i for i, name in enumerate(classes)}


def tv_make_dataset(
    directory: str,
    class_to_idx: dict[str, int],
    extensions: Any = None,
    is_valid_file: Callable[[str], bool] | None = None,
    allow_empty: bool = False,
) -> list[tuple[str, int]]:
    directory = os.path.expanduser(directory)
    if (extensions is None) == (is_valid_file is None):
        raise ValueError(
            "Both extensions and is_valid_file cannot be None or not None at the same time"
        )
    if extensions is not None:

        def is_valid_file(x: str) -> bool:
            return tv_has_file_allowed_extension(x, extensions)

    assert is_valid_file is not None
    instances = []
    available_classes = set()
    for target_class in sorted(class_to_idx.keys()):
        class_index = class_to_idx[target_class]
        target_dir = os.path.join(directory, target_class)
        if not os.path.isdir(target_dir):
            continue
        for root, _, fnames in sorted(os.walk(target_dir, followlinks=True)):
            for fname in sorted(fnames):
                path = os.path.join(root, fname)
                if is_valid_file(path):
                    instances.append((path, class_index))
                    available_classes.add(target_class)
    empty_classes = set(class_to_idx.keys()) - available_classes
    if empty_classes and not allow_empty:
        raise FileNotFoundError(
            f"Found no valid file for the classes {', '.join(sorted(empty_classes))}. "
        )
    return instances


def tv_image_folder(
    root: str, is_valid_file: Callable[[str], bool] | None = None, allow_empty: bool = False
) -> tuple[list[str], list[tuple[str, int]]]:
    """``ImageFolder(root, is_valid_file=..., allow_empty=...)``'s classes and samples."""
    classes, class_to_idx = tv_find_classes(root)
    extensions = TV_IMG_EXTENSIONS if is_valid_file is None else None
    return classes, tv_make_dataset(root, class_to_idx, extensions, is_valid_file, allow_empty)


# -- a tree with odd names ------------------------------------------------------------------


def make_tree(root: Path, *, empty_class: bool = False) -> Path:
    files = [
        "cat/b.jpg",
        "cat/A.JPG",
        "cat/a.jpeg",
        "cat/.hidden.png",
        "cat/notes.txt",  # unsupported extension
        "cat/x.jpg.bak",  # unsupported: the extension is the end of the name
        "cat/sub/z.png",
        "cat/sub dir/y.png",  # ' ' sorts before '/': 'cat/sub dir' walks before 'cat/sub/deeper'
        "cat/sub/deeper/w.bmp",
        "cat/sub-x/v.webp",
        "Dog/ü.png",  # upper case sorts before lower case
        "Dog/é file.PNG",
        "Dog/Z.tiff",
        "dog/1.png",
        "dog/10.png",
        "dog/2.png",
        "ñandú/photo.jpg",
        "a.b/c.d.ppm",  # a dot in a class name
        "with space/ x .pgm",
        "zebra/deep/er/than/this.tif",
    ]
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (root / "loose-file.jpg").write_bytes(b"")  # not in a class folder: ignored
    (root / ".git").mkdir()  # a hidden folder is a class too (and an empty one)
    (root / ".git" / "HEAD").write_bytes(b"")
    if not empty_class:
        (root / ".git" / "x.png").write_bytes(b"")
    return root


def test_the_transcription_is_the_published_extension_list() -> None:
    assert IMG_EXTENSIONS == TV_IMG_EXTENSIONS


def test_classes_and_targets_match_torchvisions_rules(tmp_path: Path) -> None:
    root = str(make_tree(tmp_path / "train"))
    classes, samples = tv_image_folder(root)
    got = image_folder_targets(root)
    assert got.classes == classes
    assert got.class_to_idx == {name: i for i, name in enumerate(classes)}
    assert got.samples == samples
    assert got.targets == [t for _, t in samples]
    assert len(got) == len(samples)
    # The cases the tree is made of really are in the order torchvision gives them.
    relative = [os.path.relpath(p, root) for p, _ in samples]
    # os.walk's roots sorted as whole strings: 'cat/sub' < 'cat/sub dir' < 'cat/sub-x' <
    # 'cat/sub/deeper' (' ' < '-' < '/'), which sorting the file paths would not give.
    walked = ["cat/sub/z.png", "cat/sub dir/y.png", "cat/sub-x/v.webp", "cat/sub/deeper/w.bmp"]
    assert [p for p in relative if p in walked] == walked
    assert sorted(walked) != walked
    assert relative.index("cat/a.jpeg") < relative.index("cat/sub dir/y.png")
    assert "cat/notes.txt" not in relative and "cat/x.jpg.bak" not in relative
    assert classes[0] == ".git" and classes.index("Dog") < classes.index("dog")
    assert got.relative_paths == relative


def test_is_valid_file_and_extensions(tmp_path: Path) -> None:
    root = str(make_tree(tmp_path / "train"))

    def only_png(path: str) -> bool:
        return path.endswith(".png") or path.endswith("HEAD")

    classes, samples = tv_image_folder(root, is_valid_file=only_png, allow_empty=True)
    got = image_folder_targets(root, is_valid_file=only_png, allow_empty=True)
    assert (got.classes, got.samples) == (classes, samples)
    # extensions= is make_dataset's: case-insensitive, a string or a tuple.
    tv = tv_make_dataset(root, tv_find_classes(root)[1], (".PNG".lower(), ".txt"), allow_empty=True)
    assert image_folder_targets(root, extensions=(".png", ".txt"), allow_empty=True).samples == tv
    tv = tv_make_dataset(root, tv_find_classes(root)[1], ".png", allow_empty=True)
    assert image_folder_targets(root, extensions=".png", allow_empty=True).samples == tv
    with pytest.raises(ValueError, match="Both extensions and is_valid_file"):
        image_folder_targets(root, extensions=".png", is_valid_file=only_png)


def test_empty_classes_are_an_error_unless_allowed(tmp_path: Path) -> None:
    root = str(make_tree(tmp_path / "train", empty_class=True))
    with pytest.raises(FileNotFoundError, match=r"Found no valid file for the classes \.git"):
        tv_image_folder(root)
    with pytest.raises(FileNotFoundError, match=r"Found no valid file for the classes \.git"):
        image_folder_targets(root)
    classes, samples = tv_image_folder(root, allow_empty=True)
    got = image_folder_targets(root, allow_empty=True)
    assert (got.classes, got.samples) == (classes, samples)
    assert 0 not in got.targets  # '.git' keeps index 0 and has no sample
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder"):
        image_folder_targets(tmp_path / "flat")


def test_symlinked_folders_are_followed(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "train")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "inner").mkdir(parents=True)
    (elsewhere / "inner" / "q.jpg").write_bytes(b"")
    os.symlink(elsewhere, root / "linked-class")
    os.symlink(elsewhere / "inner", root / "cat" / "link")
    classes, samples = tv_image_folder(str(root))
    got = image_folder_targets(root)
    assert "linked-class" in got.classes
    assert (got.classes, got.samples) == (classes, samples)


def test_against_torchvision_itself_where_it_imports(tmp_path: Path) -> None:
    try:
        from torchvision.datasets import ImageFolder
    except Exception:  # not installed, or built for another torch
        pytest.skip("torchvision is not importable here (the transcription above is the oracle)")
    root = str(make_tree(tmp_path / "train"))
    dataset = ImageFolder(root)
    got = image_folder_targets(root)
    assert (got.classes, got.samples, got.targets) == (
        dataset.classes,
        dataset.samples,
        dataset.targets,
    )


def test_a_folder_uploads_as_imagefolder_indexes_it(
    tmp_path: Path, client: SamplePlanClient
) -> None:
    root = str(make_tree(tmp_path / "train"))
    classes, samples = tv_image_folder(root)
    dataset = client.create_dataset_from_folder(root)
    assert dataset.classes == classes
    assert dataset.size == len(samples)
    assert client.codes(dataset.id).tolist() == [t for _, t in samples]
    # The same labels by another route are the same dataset.
    assert client.create_dataset([classes[t] for _, t in samples]).id == dataset.id
    # A plan's dataset-space indices index the ImageFolder's samples.
    plan = client.create_plan(dataset_id=dataset.id, seed=1)
    drawn = client.indices(plan.id, space="dataset")
    assert all(0 <= i < len(samples) for i in drawn.tolist())


@pytest.mark.anyio
async def test_the_async_client_uploads_a_folder_alike(
    tmp_path: Path, module_server: LiveServer, client: SamplePlanClient
) -> None:
    root = make_tree(tmp_path / "train")
    no_bmp = tuple(e for e in IMG_EXTENSIONS if e != ".bmp")
    async with AsyncSamplePlanClient(module_server.url, retries=0) as api:
        dataset = await api.create_dataset_from_folder(root, extensions=no_bmp)
    assert dataset == client.create_dataset_from_folder(root, extensions=no_bmp)
    kept = image_folder_targets(root, extensions=no_bmp)
    assert "cat/sub/deeper/w.bmp" not in kept.relative_paths
    assert dataset.size == len(kept) and dataset.classes == kept.classes


def test_a_name_with_a_line_break_cannot_go_as_a_path_list(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a\nb.png").write_bytes(b"")
    found = image_folder_targets(tmp_path)
    assert found.targets == [0]  # listed as torchvision lists it
    with pytest.raises(ValueError, match="line break"):
        found.manifest()
