"""Training data: train/validation split, in-memory face datasets, augmentation, batch streams."""

from faceswap.data.augment import AugmentConfig
from faceswap.data.dataset import FaceDataset
from faceswap.data.loader import BatchStream
from faceswap.data.split import leak_report, split_train_val

__all__ = ["AugmentConfig", "BatchStream", "FaceDataset", "leak_report", "split_train_val"]
