"""Print the params/GMACs table of registered models (a smoke run of the model package).

    python -m jobs.model_report [--config FILE] [models='[tsn_r50,tsi_r50]'] [frames=16] ...
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from pipelines.config import parse_job_config


@dataclass(frozen=True)
class ModelReportConfig:
    models: tuple[str, ...] = ("tsn_r50", "tsm_r50", "tsi_r50", "tsi_r50_fast_align")
    frames: int = 8
    size: int = 224
    num_classes: int = 400
    width: int = 64


def main(argv: list[str] | None = None) -> int:
    config = parse_job_config(ModelReportConfig, __doc__, argv)

    from pipelines.report import format_table
    from tsi_model.flops import complexity_report

    rows = complexity_report(
        config.models, frames=config.frames, size=config.size, num_classes=config.num_classes, width=config.width
    )
    print(f"{config.frames} frames x {config.size}x{config.size}, {config.num_classes} classes, width {config.width}")
    print(format_table(rows, list(rows[0].keys())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
