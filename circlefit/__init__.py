"""circlefit: a reproducible DVC + PyTorch + ONNX pipeline that learns x² + y²."""

__version__ = "0.1.0"
