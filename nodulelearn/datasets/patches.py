"""Real (or exported) patches as a labelled test set, in the convention of our renders.

``load_patches(path, ...)`` reads one of:
- a CSV with a header and the columns ``path,label`` (PNG, 8- or 16-bit, or ``.npy`` files,
  paths relative to the CSV's folder);
- a folder with ``benign/`` and ``malignant/`` subfolders of such files;
- an ``.npz`` with ``images`` and ``labels`` arrays, or the MedMNIST layout ``{split}_images`` /
  ``{split}_labels`` (``split`` names which: ``train``, ``val``, ``test``).
A label is 0 / 1 / ``benign`` / ``malignant``. A 3-D array (a volume, ``[D, H, W]``, axial
slices along the first axis) gives its central axial slice.

``intensity`` says what the stored values are: ``hu`` (Hounsfield units), ``unit`` (our HU
window already scaled to [0, 1]; an integer PNG is scaled by its full range, 255 or 65535), or
``uint8`` (the window scaled to 0-255). Values become our convention: the HU window
(``render.WINDOW_LEVEL_HU``, ``WINDOW_WIDTH_HU``) scaled to [0, 1], float32 ``[n, S, S, 1]``;
a model's adapter (``nodulelearn.model_adapter``) then takes them as it takes our renders.
Every problem is one ``PatchError`` line naming the file and what was expected.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

IMAGE_INTENSITIES = ("hu", "unit", "uint8")
IMAGE_SUFFIXES = (".png", ".npy")
CLASS_FOLDERS = ("benign", "malignant")
_LABELS = {"0": 0, "1": 1, "benign": 0, "malignant": 1}


class PatchError(ValueError):
    """Patches that cannot be used as a test set; the message says why and what was expected."""


@dataclasses.dataclass(frozen=True)
class Patches:
    """Labelled patches: ``images`` float32 ``[n, S, S, 1]`` in [0, 1] (the HU window),
    ``labels`` int ``[n]`` (0 benign, 1 malignant), ``name`` for tables, ``source`` the path."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    source: str

    def __len__(self) -> int:
        return int(self.labels.size)


def parse_label(value, where: str) -> int:
    """0 / 1 / benign / malignant (any case; numbers too) -> 0 or 1."""
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if isinstance(value, (int, np.integer, float, np.floating)) and float(value) in (0.0, 1.0):
        return int(value)
    label = _LABELS.get(str(value).strip().lower())
    if label is None:
        raise PatchError(f"{where}: invalid label {value!r}. Expected 0, 1, benign or malignant.")
    return label


def _read_png(path: str) -> np.ndarray:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PatchError(f"Could not read the PNG {path!r} (missing, unreadable or not a PNG).")
    if image.ndim != 2:
        raise PatchError(f"{path!r}: expected a single-channel (grayscale) PNG, shape [H, W]. "
                         f"Received shape {list(image.shape)} ({image.shape[-1]} channels).")
    return image.astype(np.float64), float(np.iinfo(image.dtype).max)


def _one_image(array: np.ndarray, where: str) -> np.ndarray:
    """A 2-D image from a ``[H, W]``, ``[H, W, 1]`` or volume ``[D, H, W]`` array."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 3:
        array = array[array.shape[0] // 2]  # a volume: its central axial slice
    if array.ndim != 2:
        raise PatchError(f"{where}: expected a 2-D image [H, W] or a 3-D volume [D, H, W]. "
                         f"Received shape {list(array.shape)}.")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise PatchError(f"{where}: expected numeric pixels. Received dtype {array.dtype}.")
    return array.astype(np.float64)


def _read_file(path: str, where: str) -> tuple[np.ndarray, float | None]:
    """The raw pixels, and a PNG's full scale (255 or 65535; None for an array)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in IMAGE_SUFFIXES:
        raise PatchError(f"{where}: expected a .png or .npy image. Received {path!r}.")
    if not os.path.isfile(path):
        raise PatchError(f"{where}: the image {path!r} does not exist or is not a file.")
    if suffix == ".png":
        return _read_png(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PatchError(f"{where}: could not read {path!r} as a .npy array: {err}") from None
    return _one_image(array, f"{where} ({path!r})"), None


def _to_unit(image: np.ndarray, full_scale: float | None, intensity: str,
             where: str) -> np.ndarray:
    """Stored values -> our [0, 1] window (module doc); ``full_scale``: a PNG's 255 or 65535."""
    from nodulelearn.datasets.render import WINDOW_LEVEL_HU, WINDOW_WIDTH_HU

    bad = np.count_nonzero(~np.isfinite(image))
    if bad:
        raise PatchError(f"{where}: {bad} pixels are NaN or infinite; expected finite values.")
    if full_scale is not None and intensity == "unit":
        return image / full_scale
    if intensity == "hu":
        low = WINDOW_LEVEL_HU - WINDOW_WIDTH_HU / 2.0
        return np.clip((image - low) / WINDOW_WIDTH_HU, 0.0, 1.0)
    scale = 255.0 if intensity == "uint8" else 1.0
    if image.size == 0:
        raise PatchError(f"{where}: the image is empty (shape {list(image.shape)}).")
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > scale * (1 + 1e-6):
        raise PatchError(f"{where}: values span [{low:.4g}, {high:.4g}], outside [0, {scale:g}] "
                         f"expected for --images_intensity={intensity}. Valid: "
                         f"{', '.join(IMAGE_INTENSITIES)}.")
    return image / scale


def _csv_items(path: str) -> list[tuple[str, object, str]]:
    root = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            fields = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PatchError(f"Could not read the CSV {path!r}: {err}") from None
    if not rows:
        raise PatchError(f"The CSV {path!r} has no images: expected a header path,label and one "
                         "row per image.")
    if not {"path", "label"} <= set(fields):
        raise PatchError(f"The CSV {path!r} needs the columns path,label. Received columns: "
                         f"{', '.join(str(c) for c in fields)}.")
    items = []
    for line, row in enumerate(rows, start=2):
        where = f"{path!r} line {line}"
        if not (row["path"] or "").strip():
            raise PatchError(f"{where}: empty path; expected an image path relative to the CSV.")
        items.append((os.path.join(root, row["path"].strip()), row["label"], where))
    return items


def _folder_items(path: str) -> list[tuple[str, object, str]]:
    missing = [c for c in CLASS_FOLDERS if not os.path.isdir(os.path.join(path, c))]
    if missing:
        raise PatchError(f"The folder {path!r} needs the subfolders benign/ and malignant/. "
                         f"Missing: {', '.join(m + '/' for m in missing)}.")
    items = []
    for label, folder in enumerate(CLASS_FOLDERS):
        for entry in sorted(os.listdir(os.path.join(path, folder))):
            if not entry.startswith(".") and entry.lower().endswith(IMAGE_SUFFIXES):
                file = os.path.join(path, folder, entry)
                items.append((file, label, repr(file)))
    if not items:
        raise PatchError(f"The folder {path!r} has no images: expected .png or .npy files in "
                         "benign/ and malignant/.")
    return items


def _npz_arrays(path: str, split: str | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            prefix = f"{split}_" if split else ""
            wanted = (f"{prefix}images", f"{prefix}labels")
            if not all(k in keys for k in wanted):
                splits = sorted(k[:-len("_images")] for k in keys if k.endswith("_images"))
                hint = (f" It holds the splits {', '.join(splits)}: pass --images_split "
                        "(library: split=...)." if splits and not split else "")
                raise PatchError(f"The archive {path!r} has no arrays {' and '.join(wanted)}. "
                                 f"Arrays: {', '.join(keys) or 'none'}.{hint}")
            return archive[wanted[0]], archive[wanted[1]]
    except (OSError, ValueError) as err:
        if isinstance(err, PatchError):
            raise
        raise PatchError(f"Could not read {path!r} as an .npz archive: {err}") from None


def _check_sizes(images, names, image_size, resize):
    import cv2

    shapes = sorted({im.shape for im in images})
    if resize:
        if image_size is None:
            raise PatchError("images_resize needs the model's image size.")
        return [im if im.shape == (image_size, image_size) else
                cv2.resize(im.astype(np.float32), (image_size, image_size),
                           interpolation=cv2.INTER_AREA if im.shape[0] > image_size
                           else cv2.INTER_LINEAR).astype(np.float64)
                for im in images]
    if len(shapes) > 1:
        first = {s: next(n for im, n in zip(images, names, strict=True) if im.shape == s)
                 for s in shapes[:3]}
        listed = "; ".join(f"{s[0]}x{s[1]} (e.g. {n})" for s, n in first.items())
        raise PatchError(f"The patches have mixed sizes: {listed}. Expected one size; pass "
                         "--images_resize (library: resize=True) to resize them to the model's.")
    if image_size is not None and shapes[0] != (image_size, image_size):
        raise PatchError(f"The patches are {shapes[0][0]}x{shapes[0][1]} but the model takes "
                         f"{image_size}x{image_size}. Pass --images_resize (library: "
                         "resize=True) to resize them.")
    return images


def load_patches(path, *, intensity: str = "unit", split: str | None = None,
                 image_size: int | None = None, resize: bool = False) -> Patches:
    """Labelled patches from a CSV, a class folder or an .npz (module doc).

    Args:
        path: the CSV, folder or .npz.
        intensity: what the stored values are: ``hu``, ``unit`` or ``uint8``.
        split: with the MedMNIST layout, which split (``{split}_images`` / ``{split}_labels``).
        image_size: the model's input size: the patches must have it unless ``resize``.
        resize: resize every patch to ``image_size`` x ``image_size``.

    Returns:
        ``Patches`` with images float32 ``[n, S, S, 1]`` in our [0, 1] window.

    Raises:
        PatchError (a ValueError): see the module doc; one line each.
    """
    path = os.fspath(path)
    if intensity not in IMAGE_INTENSITIES:
        raise PatchError(f"Invalid images_intensity {intensity!r}. Expected one of "
                         f"{', '.join(IMAGE_INTENSITIES)}.")
    if not os.path.exists(path):
        raise PatchError(f"The images {path!r} do not exist: expected a CSV (path,label), a "
                         "folder with benign/ and malignant/, or an .npz.")
    kind = "npz" if path.lower().endswith(".npz") else "csv" if path.lower().endswith(
        ".csv") else "folder" if os.path.isdir(path) else None
    if kind is None:
        raise PatchError(f"Expected a .csv, an .npz or a folder of images. Received {path!r}.")
    if split is not None and kind != "npz":
        raise PatchError(f"images_split={split!r} applies to an .npz only. Received {path!r}.")
    images, labels, names = [], [], []
    if kind == "npz":
        array, raw_labels = _npz_arrays(path, split)
        raw_labels = np.asarray(raw_labels).reshape(len(array), -1) if len(array) else raw_labels
        if array.ndim < 3 or len(array) == 0 or raw_labels.shape[-1] != 1:
            raise PatchError(f"{path!r}: expected images [n, H, W] (or [n, H, W, 1], volumes "
                             f"[n, D, H, W]) and labels [n]; received images "
                             f"{list(array.shape)} and labels {list(np.shape(raw_labels))}.")
        for i, (image, label) in enumerate(zip(array, raw_labels[:, 0], strict=True)):
            where = f"{path!r} image {i}"
            images.append(_to_unit(_one_image(np.asarray(image), where), None, intensity,
                                   where))
            labels.append(parse_label(label.item(), where))
            names.append(f"image {i}")
    else:
        for file, label, where in (_csv_items(path) if kind == "csv" else _folder_items(path)):
            image, full_scale = _read_file(file, where)
            images.append(_to_unit(image, full_scale, intensity, where))
            labels.append(parse_label(label, where))
            names.append(os.path.relpath(file, path if kind == "folder" else
                                         os.path.dirname(os.path.abspath(path))))
    images = _check_sizes(images, names, image_size, resize)
    stem = os.path.basename(os.path.normpath(path))
    return Patches(
        images=np.stack(images).astype(np.float32)[..., None],
        labels=np.asarray(labels, np.int64),
        name=f"images:{stem}{':' + split if split else ''}",
        source=os.path.abspath(path),
    )
