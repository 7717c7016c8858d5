"""Data: FER2013 / FER+ readers, image I/O, each model's preprocessing, statistics, sample grids.

``from fervid.data import load_dataset`` keeps working: the dataset API is re-exported here
(numpy and Pillow only; no torch).
"""

from fervid.data.datasets import (
    IMAGE_EXTENSIONS,
    BadRecord,
    FERData,
    FERDataError,
    load_dataset,
    load_fer2013,
    load_image_folder,
    load_pack,
    save_pack,
)

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
