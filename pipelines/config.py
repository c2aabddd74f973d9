"""Typed, frozen dataclass configs loaded from YAML with ``key.sub=value`` CLI overrides.

Every job resolves its config through :func:`load_config` (``pipelines.cli.resolve_config``) so
a config file, its defaults and the overrides given on the command line resolve the same way
everywhere, and an unknown or mistyped key is an error instead of a silently ignored setting.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

BASE_KEY = "_base_"
# The shipped configs: a file inside this tree may inherit only from files inside it.
CONFIGS_ROOT = Path(__file__).resolve().parents[1] / "jobs" / "configs"


class ConfigError(ValueError):
    """A config file or override that does not match the config's schema."""


class _DuplicateKey(Exception):
    """Raised while parsing: a mapping sets the same key twice (YAML would keep the last)."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping instead of last-wins."""

    def construct_mapping(self, node, deep=False):  # noqa: D102 (PyYAML hook)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` is meant to be refined by the keys after it
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(f"duplicate key {key!r} at line {line} "
                                            f"(first at line {seen[key]})")
                    seen[key] = line
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it below
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text to Python values; a duplicate key or invalid YAML is a one-line ConfigError."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to the field's declared type, refusing what does not fit."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return from_dict(annotation, value, where)
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (list,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin in (dict,):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # PyYAML (YAML 1.1) reads 1.8e6 without a sign as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        if number is not None:
            raise ConfigError(f"{where}: {value!r} is not a finite number")
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into nested dataclass fields."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(names)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        default = _default_of(fields[name])
        if isinstance(value, dict) and dataclasses.is_dataclass(default):
            # a partial mapping refines the field's own default, not the nested class's defaults
            value = merge_trees(dataclasses.asdict(default), value)
        kwargs[name] = _coerce(value, hints[name], f"{where + '.' if where else ''}{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # missing fields, or a __post_init__ validation
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for logging it to MLflow or writing it back to YAML)."""
    return dataclasses.asdict(config)


def flatten_keys(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.01}}`` -> ``{"optim.lr": 0.01}``: nested sections as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_keys(value, name + "."))
        else:
            out[name] = value
    return out


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["train.lr=0.1", "model.name=tsi_r50"]`` into a nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = parse_yaml(raw, f"override {item!r}") if raw.strip() else ""
        _set_path(tree, key.strip(), value)
    return tree


def merge_trees(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two nested dicts; ``extra`` wins, sections merge key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_trees(merged[key], value)
        else:
            merged[key] = value
    return merged


def is_base_config(path: str | Path) -> bool:
    """A base (inherited through ``_base_``, never run itself): ``_name.yaml`` or under ``_base_/``."""
    parts = Path(path).parts
    return bool(parts) and (parts[-1].startswith("_") or BASE_KEY in parts[:-1])


def runnable_configs(folder: str | Path) -> list[Path]:
    """The YAML files under ``folder`` that a job may be given (bases left out), sorted."""
    return sorted(p for p in Path(folder).rglob("*.yaml")
                  if not is_base_config(p.relative_to(folder)))


def read_config_tree(path: str | Path) -> dict[str, Any]:
    """The mapping a config file states, with the files named in its ``_base_`` merged under it.

    ``_base_`` (top level only) is a path or a list of paths, relative to the file that names
    it; bases merge in order, each later one and then the file itself winning key by key, and
    may have bases of their own. A cycle is refused. Every base must really lie (symlinks
    resolved) in the shipped configs tree or in the folder of the file named here, so a config
    cannot pull settings from elsewhere on the machine.
    """
    entry = Path(path)
    roots = (Path(os.path.realpath(CONFIGS_ROOT)), Path(os.path.realpath(entry.absolute().parent)))
    return _read_tree(entry, roots, ())


def _read_tree(path: Path, roots: tuple[Path, ...], chain: tuple[Path, ...]) -> dict[str, Any]:
    real = Path(os.path.realpath(path))
    if real in chain:
        cycle = " -> ".join(str(p) for p in (*chain, real))
        raise ConfigError(f"{chain[-1]}: {BASE_KEY} makes a cycle: {cycle}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    loaded = parse_yaml(text, str(path))
    loaded = {} if loaded is None else loaded
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    bases = loaded.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a path or a list of paths, got {bases!r}")
    tree: dict[str, Any] = {}
    for base in bases:
        base_path = real.parent / base  # an absolute ``base`` replaces the folder
        base_real = Path(os.path.realpath(base_path))
        if not any(base_real.is_relative_to(root) for root in roots):
            raise ConfigError(
                f"{path}: {BASE_KEY} {base!r} resolves to {base_real}, outside "
                f"{' and '.join(str(r) for r in dict.fromkeys(roots))}; a base must live in the "
                "shipped configs tree or beside the config file given")
        tree = merge_trees(tree, _read_tree(base_path, roots, (*chain, real)))
    return merge_trees(tree, loaded)


def refuse_non_finite(tree: Any, where: str = "") -> None:
    """Raise on a NaN or infinite number anywhere in a config tree (``optim.lr=.nan``)."""
    items = (tree.items() if isinstance(tree, dict)
             else enumerate(tree) if isinstance(tree, (list, tuple)) else ())
    for key, value in items:
        name = f"{where}[{key}]" if isinstance(key, int) else f"{where + '.' if where else ''}{key}"
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name}: {value} is not a finite number")
        refuse_non_finite(value, name)


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
) -> T:
    """Resolve ``cls`` defaults < ``base`` < YAML file < ``flags`` < CLI overrides into a frozen config.

    The YAML file is read with its ``_base_`` files (:func:`read_config_tree`); a base itself
    is refused as the file to run. ``flags`` are values a job's own command-line options set
    (taken as given, never re-parsed as YAML); ``overrides`` are ``key.sub=value`` strings whose
    values are parsed as YAML. Duplicate YAML keys and non-finite numbers are errors.
    """
    tree: dict[str, Any] = dict(base or {})
    if path is not None:
        if is_base_config(path):
            raise ConfigError(f"{path} is a base config (named in other configs' {BASE_KEY}), "
                              "not one to run: give a config that inherits from it")
        tree = merge_trees(tree, read_config_tree(path))
    tree = merge_trees(tree, flags or {})
    tree = merge_trees(tree, parse_overrides(list(overrides)))
    refuse_non_finite(tree)
    return from_dict(cls, tree)

