"""Training: Ray Train workers running a DeepSpeed engine over the loader's shards.

``run_training(cfg)`` (driver) → ``train_loop`` (every worker) → an exported, self-describing
checkpoint that ``tsi_model`` loads alone. Tracking is a protocol (``tracking.py``); the MLflow
backend lives above this package.
"""
