"""Will a rendered dataset fit in memory? Checked before any work starts.

A training split is rendered into memory (``n x image_size^2`` float32 pixels, per view); a
study with ``image_size = 100000`` or ``n_train = 10**9`` would otherwise pass validation and
fail every run with a ``MemoryError`` traceback.
"""

from __future__ import annotations

import numbers
import os

BYTES_PER_PIXEL = 4  # float32, single channel
DEFAULT_MEMORY_FRACTION = 0.5  # of the available memory: room for the model, the copies of tf.data


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation (Linux ``MemAvailable``, else physical memory).

    Returns:
        Bytes, or ``None`` where the platform does not say.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def dataset_bytes(n: int, image_size: int, *, views: int = 1) -> int:
    """Bytes of ``n`` rendered images of ``image_size`` pixels (float32, ``views`` per sample)."""
    for arg, value, minimum in (("n", n, 0), ("image_size", image_size, 1), ("views", views, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected an integer >= "
                             f"{minimum}. Received: {arg}={value!r}")
    return int(n) * int(image_size) ** 2 * BYTES_PER_PIXEL * int(views)


def check_dataset_fits_memory(
    n: int,
    image_size: int,
    *,
    views: int = 1,
    available_bytes: int | None = None,
    fraction: float = DEFAULT_MEMORY_FRACTION,
    what: str = "the dataset",
) -> int:
    """Raises a clear ``ValueError`` if ``n`` images of ``image_size`` pixels would not fit.

    Args:
        n: number of samples held in memory at once (e.g. ``n_train``).
        image_size: side of the images in pixels.
        views: images per sample.
        available_bytes: the memory to compare with; default ``available_memory_bytes()`` (when
            the platform does not tell, nothing is checked).
        fraction: the share of ``available_bytes`` the images may take, in (0, 1].
        what: how the message names the data (``"n_train"``, ``"study run 'x'"``).

    Returns:
        The bytes the images take.

    Raises:
        ValueError: they need more than ``fraction x available_bytes`` (Keras template message,
            with both sizes and what to lower), or an argument is invalid.
    """
    needed = dataset_bytes(n, image_size, views=views)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not (
            0.0 < fraction <= 1.0):
        raise ValueError(f"Invalid value for argument `fraction`. Expected a number in (0, 1]. "
                         f"Received: fraction={fraction!r}")
    if available_bytes is None:
        available_bytes = available_memory_bytes()
        if available_bytes is None:
            return needed
    elif isinstance(available_bytes, bool) or not isinstance(available_bytes, numbers.Integral) \
            or available_bytes < 0:
        raise ValueError(f"Invalid value for argument `available_bytes`. Expected an integer >= "
                         f"0. Received: available_bytes={available_bytes!r}")
    budget = fraction * available_bytes
    if needed > budget:
        raise ValueError(
            f"Invalid value for {what}: n={n} images of {image_size}x{image_size} pixels"
            f"{f' x {views} views' if views != 1 else ''} need {_gib(needed)} of memory. Expected "
            f"at most {_gib(budget)} ({fraction:g} of the {_gib(available_bytes)} available). "
            f"Received: n={n}, image_size={image_size}. Lower n or image_size."
        )
    return needed


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"
