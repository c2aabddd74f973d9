"""Operations on registered models: evaluate, promote through a gate, roll back, nightly runs.

Layer 7 (docs/architecture.md): above ``pipelines.tracking`` (registry layout, lineage tags)
and ``pipelines.evaluation`` (the metrics and the export reader). Models are always loaded from
their checkpoint artifact with this package's own code, never by running code a model shipped.

- ``evaluate``: the one engine (Ray tasks, each video once) and the MLflow run it records;
- ``gate``: the paired-bootstrap promotion gate (pure NumPy);
- ``promote``: gate, lease-guarded commit into ``{task}@champion``, rollback;
- ``nightly``: the nightly evaluation and its alarms;
- ``models`` / ``store``: which model and which MLflow store a job means.
"""
