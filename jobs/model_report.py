"""Print the params/GMACs table of registered models (a smoke run of the model package).

    python -m jobs.model_report [--config FILE] [models='[tsn_r50,tsi_r50]'] [frames=16] ...

Config: ``tsi_model.flops.ModelReportConfig``. Exit status: 0 printed; 1 failed; 2 bad
configuration (one line).
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.model_report", __doc__)
    cli.add_overrides(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from pipelines.report import format_table
        from tsi_model.flops import ModelReportConfig, complexity_report

        config = cli.resolve_config(ModelReportConfig, args, {})
        rows = complexity_report(config.models, frames=config.frames, size=config.size,
                                 num_classes=config.num_classes, width=config.width)
        print(f"{config.frames} frames x {config.size}x{config.size}, {config.num_classes} "
              f"classes, width {config.width}")
        print(format_table(rows, list(rows[0].keys())))
        return cli.EXIT_OK

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
