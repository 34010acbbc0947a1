"""Inference off the training path: int8 and ONNX backends (backends.py) and ONNX export (onnx_export.py)."""
