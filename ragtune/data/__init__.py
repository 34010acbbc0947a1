from ragtune.data.beir import BeirDataset, DataError, Doc, load_beir

__all__ = ["BeirDataset", "DataError", "Doc", "load_beir"]
