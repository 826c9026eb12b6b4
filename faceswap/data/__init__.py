"""Training data: train/validation split, in-memory face datasets, augmentation, batch streams.

The names below load on first use: `faceswap.data.stored_masks` (plain numpy and OpenCV) is
also read by the web UI's label editor, which must not pay for importing torch.
"""

import importlib

_MODULES = {"AugmentConfig": "augment", "FaceDataset": "dataset", "BatchStream": "loader",
            "leak_report": "split", "split_train_val": "split"}  # fmt: skip

__all__ = ["AugmentConfig", "BatchStream", "FaceDataset", "leak_report", "split_train_val"]


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
