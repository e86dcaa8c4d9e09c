"""`circlefit package mlflow`: an MLflow model directory with the onnx flavor, for `mlflow models serve`,
`mlflow.pyfunc.load_model` and MLflow's model registry. Needs the `serve` extra (imported inside functions).

What MLflow's defaults would do, and why each is set here:
- a tensor signature (float32 [-1, 2] -> [-1, 1], names from the graph): without it a JSON request
  with integers (`{"inputs": [[3, 4]]}`) reaches onnxruntime as int64 and fails; with it MLflow casts;
- `save_as_external_data=False`: the default moves the weights into a uuid-named `.data` file, and
  the package's `model.onnx` would no longer be the verified bytes;
- our own `mlflow.models.Model`: the default stamps a random `model_uuid` and the time of the save;
  here the uuid is taken from the model's sha256 and the time is fixed at the epoch, so two packages
  of one model made in one environment are the same bytes (MLmodel and the environment files still
  name the Python, MLflow and onnx versions they were made with);
- explicit pip requirements pinned to what is installed: inference would load the model in a
  subprocess and name the full `mlflow` distribution;
- the CPU provider and one onnxruntime thread: the served time is JSON in and out around a
  microsecond-scale model, and onnxruntime's default pool (a spinning thread per core) takes the
  cores the server's Python needs (measured: BENCHMARKS.md, "Serving").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from circlefit.contract import sidecar_path
from circlefit.errors import PackageError
from circlefit.package.base import (
    MODEL_FILE,
    Packaged,
    Source,
    Tensor,
    load_source,
    missing_extra,
    write_package,
)

__all__ = ["EXAMPLE", "REQUIREMENTS", "THREADS", "package"]

THREADS = 1  # onnxruntime intra- and inter-op threads per served process (0: onnxruntime's default pool)
EXAMPLE = [[3.0, 4.0]]  # the input example MLflow stores: one row (x, y)
REQUIREMENTS = ("mlflow-skinny", "onnx", "onnxruntime", "numpy", "pandas")  # what loading the package needs
CREATED = "1970-01-01 00:00:00"  # MLmodel's utc_time_created: fixed, so the file does not change per save


def _mlflow() -> Any:
    try:
        import mlflow.onnx
        import pandas  # noqa: F401  (mlflow-skinny needs it to load any pyfunc model)
    except ImportError as e:
        raise missing_extra("mlflow", (e.name or "mlflow").split(".")[0], "serve") from None
    return mlflow


def _signature(source: Source) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def spec(t: Tensor) -> Any:
        try:
            dtype = np.dtype(t.dtype)
        except TypeError:
            raise PackageError(f"{source.model}: {t.name!r} has type {t.dtype}, not a numpy dtype") from None
        return TensorSpec(dtype, (-1, *t.batched(source.model)), t.name)

    return ModelSignature(
        inputs=Schema([spec(t) for t in source.inputs]), outputs=Schema([spec(t) for t in source.outputs])
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def package(model: str | Path, out: str | Path, threads: int = THREADS) -> Packaged:
    """Verify `model`, then write its MLflow package into `out` (new or empty), verified in place."""
    if threads < 0:
        raise PackageError(f"threads must be >= 0 (0: onnxruntime's default), got {threads}")
    mlflow = _mlflow()  # before anything else: without the extra, nothing is verified or written
    import onnx
    from mlflow.models import Model

    source = load_source(model)
    signature = _signature(source)
    example = np.asarray(EXAMPLE, dtype=np.dtype(source.inputs[0].dtype))

    def fill(tmp: Path) -> None:
        mlflow.onnx.save_model(
            onnx.load_from_string(source.data),
            str(tmp),
            mlflow_model=Model(model_uuid=source.sha256[:32], utc_time_created=CREATED),
            signature=signature,
            input_example=example,
            save_as_external_data=False,
            onnx_execution_providers=["CPUExecutionProvider"],
            onnx_session_options={"intra_op_num_threads": threads, "inter_op_num_threads": threads},
            pip_requirements=_requirements(),
            metadata={"circlefit": {"model_sha256": source.sha256, "sidecar": sidecar_path(MODEL_FILE).name}},
        )
        if extra := sorted(p.name for p in tmp.iterdir() if p.suffix == ".data"):
            raise PackageError(f"{tmp}: MLflow wrote external data ({', '.join(extra)}); the graph must be one file")

    return write_package("mlflow", source, out, MODEL_FILE, fill)
