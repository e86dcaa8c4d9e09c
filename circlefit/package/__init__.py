"""Serving formats written from a verified export, one module per format: `mlflow` (an MLflow model
directory), `triton` (a Triton model repository), `ort` (the ORT format for onnxruntime's minimal
builds). Each carries the verified model.onnx bytes with their sidecar and probes, so
`circlefit verify` checks the package where it lands (base). Optional dependencies are imported
inside the functions that need them."""
