"""The OpenDP engine, as one package with one public entry.

    from gateway.adapters.dp import Engine
    plan = Engine().plan(spec, policy, parquet=path, version=v, loss=loss)   # reads no data
    release = plan.release()                                                 # draws the noise

Modules (import the engine from here; what else reaches inside, and why:
``services/fits.py`` imports :mod:`.synth` and :mod:`.models` on first use, since
Private-PGM and jax are heavy; the Spark engine, ``gateway/adapters/spark/``, builds
on the same compiled blueprint, :mod:`.compiler`, :mod:`.units`, :mod:`.measure`,
:mod:`.plan` (with :mod:`.results` behind it) and ``engine.compile_budgeted``, so that both
engines plan and release alike):

- :mod:`.engine`: :class:`Engine`, :class:`Plan`, the calibration cache.
- :mod:`.plan`: what the engines' plans share (:class:`Release`, the alpha check, the
  once-only release); the fit plans' once-only release too.
- :mod:`.compiler`: a query spec -> a :class:`~.compiler.Blueprint` of polars stages.
- :mod:`.units`: one noisy expression per aggregate (null handling).
- :mod:`.measure`: OpenDP measurements, privacy maps, release; OpenDP errors translated once.
- :mod:`.results`: released frames -> rows in the spec's order, and accuracy.
- :mod:`.conversion`: zCDP's rho <-> (epsilon, delta), by OpenDP's conversion.
- :mod:`.synth`, :mod:`.synth_columns`: DP synthetic data (AIM/MST over Private-PGM);
  :mod:`.models`: DP models (Theil-Sen regression, PCA).
"""

from gateway.adapters.dp.conversion import epsilon_for_rho, rho_for_epsilon, rho_units_for_epsilon
from gateway.adapters.dp.engine import Engine, Plan, Release

__all__ = ["Engine", "Plan", "Release", "epsilon_for_rho", "rho_for_epsilon", "rho_units_for_epsilon"]
