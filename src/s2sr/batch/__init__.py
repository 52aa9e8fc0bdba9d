"""Many scenes in one run: inputs to outputs, completion records, Dask clusters, row-bands
of one large scene on several workers, and pairs datasets built from a CSV of scene pairs."""

from s2sr.batch.many import RunReport, SceneResult, predict_many
from s2sr.batch.xarray import super_resolve_xarray

__all__ = ["RunReport", "SceneResult", "predict_many", "super_resolve_xarray"]
