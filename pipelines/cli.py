"""What every ``python -m jobs.NAME`` shares: its parser, its config, its exit status.

A job's ``parser()`` (:func:`parser`, its flags, :func:`add_overrides`) reads its flags and
``key.sub=value`` overrides; its ``main(argv)`` resolves its typed config with
:func:`resolve_config` (dataclass defaults < ``--config`` YAML with its ``_base_`` files < the
job's flags < overrides), calls one library function through :func:`run`, and maps the result
to its exit status:

- 0 (``EXIT_OK``): done;
- 1 (``EXIT_FAILED``): failed; an unexpected error's traceback is in the log above its one line;
- 2 (``EXIT_BAD_INPUT``): bad input, one line on stderr: any ``ConfigError``, and the errors
  the job lists as its caller's to fix;
- 3 (``EXIT_DECISION``): a decision the caller must see (the gate said no, an alarm).

A job's docstring documents its own codes; ``jobs.preprocess`` gives 3 and 4 meanings of its own.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pipelines.config import ConfigError, load_config

T = TypeVar("T")
log = logging.getLogger("tsi.job")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DECISION = 0, 1, 2, 3
# exception class (or tuple of them) -> the exit status it means, first match wins
ExitCodes = Mapping[type[BaseException] | tuple[type[BaseException], ...], int]


def parser(prog: str, doc: str | None, configs: str | None = None) -> argparse.ArgumentParser:
    """A job's parser: its docstring as ``--help`` and ``--config FILE`` (``configs``: the
    shipped files, named in the help)."""
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with the job's config fields"
                   + (f" ({configs})" if configs else ""))
    return p


def add_overrides(p: argparse.ArgumentParser) -> None:
    """The ``key.sub=value`` overrides, after the job's own flags."""
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def resolve_config(config_cls: type[T], args: argparse.Namespace,
                   flag_map: Mapping[str, str]) -> T:
    """``config_cls`` from defaults < ``args.config`` < flags < ``args.overrides``.

    ``flag_map`` maps a flag's ``dest`` to the dotted config key it sets; a flag left at
    ``None`` (or a switch left ``False``) was not given and sets nothing. Flag values are taken
    as given, never re-parsed as YAML.
    """
    flags: dict[str, Any] = {}
    for dest, dotted in flag_map.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        node = flags
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return load_config(config_cls, getattr(args, "config", None),
                       getattr(args, "overrides", None) or (), flags=flags)


def run(job: Callable[[], int], exit_codes: ExitCodes | None = None, *,
        explain: Callable[[BaseException], str | None] | None = None) -> int:
    """Start the job's logging, run ``job`` and map what it raises to an exit status.

    ``ConfigError`` is bad input; an exception in ``exit_codes`` exits with its code and its
    message as one line; ``explain`` may recognise any other as bad input by returning its
    one-line reason (an MLflow 403). The rest is ``EXIT_FAILED``: traceback to the log, one line
    to stderr.
    """
    from pipelines.report import start_job_logging

    start_job_logging()
    try:
        return job()
    except ConfigError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    except Exception as exc:
        for kinds, code in (exit_codes or {}).items():
            if isinstance(exc, kinds):
                return _error(str(exc), code)
        reason = explain(exc) if explain else None
        if reason:
            return _error(reason, EXIT_BAD_INPUT)
        log.exception("job failed")
        first_line = (str(exc).splitlines() or [""])[0]
        return _error(f"{type(exc).__name__}: {first_line[:500]}", EXIT_FAILED)


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
