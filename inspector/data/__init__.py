"""Datasets: MVTec AD and folder layouts, strict image reading, the synthetic product."""

from inspector.data.dataset import Dataset, Sample, load_dataset, read_image, read_mask

__all__ = ["Dataset", "Sample", "load_dataset", "read_image", "read_mask"]
