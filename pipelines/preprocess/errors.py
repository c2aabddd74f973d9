"""Job-level errors: a run that cannot start or cannot keep its output consistent.

A bad video is never one of these; it is a rejected manifest row.
"""
from __future__ import annotations


class PreprocessError(RuntimeError):
    """The job cannot start or cannot keep its output consistent."""


class PlanMismatch(PreprocessError):
    """The output folder holds shards of another plan (other annotations, seed or settings)."""
