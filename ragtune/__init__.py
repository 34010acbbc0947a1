"""ragtune: raw-PyTorch fine-tuning for the retrieval side of RAG."""

__version__ = "0.1.0"
