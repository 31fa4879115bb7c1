"""The memory check that refuses a dataset too large to render into memory."""

import pytest

from nodulelearn.datasets import check_dataset_fits_memory, dataset_bytes
from nodulelearn.datasets.memory import available_memory_bytes


def test_bytes_and_a_fitting_dataset():
    assert dataset_bytes(10, 32) == 10 * 32 * 32 * 4
    assert dataset_bytes(10, 32, views=2) == 2 * 10 * 32 * 32 * 4
    assert check_dataset_fits_memory(1024, 64, available_bytes=2**30) == 1024 * 64 * 64 * 4


def test_too_large_is_refused_with_both_sizes():
    with pytest.raises(ValueError, match=r"Invalid value for n_train: n=1000000000 images of "
                       r"64x64 pixels need 1.53e\+04 GiB.*Expected at most 0.5 GiB.*Received: "
                       r"n=1000000000, image_size=64"):
        check_dataset_fits_memory(10**9, 64, available_bytes=2**30, what="n_train")
    # Exactly at the budget is accepted; one image more is not.
    budget_images = 2**29 // (64 * 64 * 4)
    check_dataset_fits_memory(budget_images, 64, available_bytes=2**30)
    with pytest.raises(ValueError, match="x 2 views"):
        check_dataset_fits_memory(budget_images, 64, views=2, available_bytes=2**30)


def test_default_is_the_machines_memory():
    available = available_memory_bytes()
    assert available is None or available > 0
    check_dataset_fits_memory(16, 32)  # a smoke-sized set fits on any machine
    if available is not None:
        with pytest.raises(ValueError, match="Lower n or image_size"):
            check_dataset_fits_memory(10**9, 1024)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=-1, image_size=32), "`n`"), (dict(n=1, image_size=0), "`image_size`"),
    (dict(n=1.5, image_size=32), "`n`"), (dict(n=1, image_size=32, views=0), "`views`"),
    (dict(n=1, image_size=32, fraction=0), "`fraction`"),
    (dict(n=1, image_size=32, available_bytes=-1), "`available_bytes`"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_dataset_fits_memory(**kwargs)
