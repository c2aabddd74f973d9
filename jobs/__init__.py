"""Thin entrypoints for ``ray job submit`` and local runs; the work lives in ``pipelines``."""
