"""Data: FER2013 / FER+ readers, image I/O, each model's preprocessing, statistics, sample grids.

``from fervid.data import load_dataset`` keeps working: the dataset API is re-exported here
(numpy and Pillow only; no torch).
"""

from fervid.data.datasets import (
    BadRecord,
    FERData,
    FERDataError,
    load_dataset,
    load_fer2013,
    load_image_folder,
    load_pack,
    save_pack,
)


def __getattr__(name: str) -> frozenset[str]:
    # IMAGE_EXTENSIONS (the formats Pillow decodes) is computed on first use, not at import.
    if name == "IMAGE_EXTENSIONS":
        from fervid.data.imagefile import image_extensions

        return image_extensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IMAGE_EXTENSIONS",
    "BadRecord",
    "FERData",
    "FERDataError",
    "load_dataset",
    "load_fer2013",
    "load_image_folder",
    "load_pack",
    "save_pack",
]
