"""The Spark engine: DP queries on data that stays where it is (a Parquet directory or a
table Spark can read), behind the same port as the polars engine (docs/spark.md).

    from gateway.adapters.spark import SparkSessions
    from gateway.adapters.spark.engine import SparkEngine   # imports pyspark
    engine = SparkEngine(SparkSessions(settings.spark_master))
    plan = engine.plan(spec, policy, parquet=location, version=v, loss=loss)
    release = plan.release()

Modules (private to the package; import from here, but :class:`SparkEngine` from
:mod:`.engine`, which imports pyspark):

- :mod:`.session`: one lazily created SparkSession per process, stopped at shutdown.
- :mod:`.frames`: the stable row-level part as Spark DataFrames (filters, clipping, fixed
  point, contribution bounding, group-by); no noise.
- :mod:`.noise`: OpenDP measurements on the collected vectors, their maps and accuracy.
- :mod:`.engine`: :class:`SparkEngine`, :class:`SparkPlan`, the charge check.
- :mod:`.source`: registration checks of a source read in place.

pyspark is imported only when a Spark dataset is planned or registered.
"""

import warnings

from gateway.adapters.spark.session import SparkSessions

# pyspark 4.3 warns on import that it is not certified with pandas 3; the gateway converts
# nothing to pandas (it collects Rows), so a healthy start stays quiet
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                        category=FutureWarning)

__all__ = ["SparkSessions"]
