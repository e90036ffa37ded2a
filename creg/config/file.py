"""A run's settings from a file (``creg run --config FILE``): a run's own ``config.json``, or a user's
TOML or YAML file.

The file holds ``creg run``'s settings by their long option names (``adapter``, ``sources``,
``limit``/``n``, ``seed``, ``k``, ``source_options``, ``bench_options``, ``cos``, ``out``, ...; dashes or
underscores), either at the top level or in a ``[run]`` table (not both: a file with settings in
both places is refused); a run's ``config.json`` is recognised
by its ``run`` object and re-runs exactly that configuration. Options given on the command line
override the file. YAML needs PyYAML (``pip install pyyaml``).

Example ``experiment.toml``::

    adapter = "qwen2vl-toy"
    sources = ["creg", "attention_rollout", "random"]
    limit = 200
    seed = 1
    [source_options.creg]
    layers = [-2, -3]
    [bench_options]
    width = 448
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

#: File keys that differ from the option's parameter name in ``creg run``.
ALIASES = {"limit": "n", "source": "sources", "registries": "registry", "source_opt": "source_options",
           "bench_opt": "bench_options", "adapter_opt": "adapter_options"}
#: RunConfig fields whose ``creg run`` parameter has another name or form.
PARAMS = {"source_options": "source_opt", "bench_options": "bench_opt", "adapter_options": "adapter_opt",
          "registry": "registries"}


class ConfigFileError(ValueError):
    """The file cannot be read or holds a setting ``creg run`` does not have (one line)."""


def read_settings(path: str | Path) -> tuple[dict[str, Any], bool]:
    """(settings by RunConfig-style name, whether the file is a run's config.json)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigFileError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":

            doc = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # lazy: optional yaml
            except ImportError:
                raise ConfigFileError(f"--config {path}: YAML needs PyYAML (pip install pyyaml), or write the file "
                                      "as TOML or JSON") from None
            doc = yaml.safe_load(text)
        elif suffix == ".json":
            doc = json.loads(text)
        else:
            raise ConfigFileError(f"--config {path}: give a .toml, .yaml/.yml or .json file (a run's config.json)")
    except ConfigFileError:
        raise
    except Exception as e:  # noqa: BLE001 - the parsers' own errors: one line with their position
        raise ConfigFileError(f"--config {path}: not valid {suffix.lstrip('.').upper()}: {e}".replace("\n", " ")) from None
    if not isinstance(doc, dict):
        raise ConfigFileError(f"--config {path}: expected a table of settings at the top level")
    is_run = isinstance(doc.get("run"), dict) and ("schema_version" in doc or "creg_version" in doc or "adapter" in doc)
    if isinstance(doc.get("run"), dict):
        others = sorted(str(k) for k in doc if k != "run")
        if others and not is_run:
            raise ConfigFileError(f"--config {path}: settings both at the top level ({', '.join(others)}) and in a [run] "
                                  "table; put them all in one place (the top-level ones would be ignored)")
        doc = doc["run"]
    settings = {}
    for key, value in doc.items():
        name = str(key).replace("-", "_")
        settings[ALIASES.get(name, name)] = value
    return settings, is_run


def option_value(name: str, value: Any) -> tuple[str, Any]:
    """(``creg run`` parameter name, value as the option takes it) of one setting."""
    if name == "sources" and isinstance(value, (list, tuple)):
        return name, ",".join(str(v) for v in value)
    if name == "source_options" and isinstance(value, dict):
        if not all(isinstance(v, dict) for v in value.values()):
            raise ConfigFileError("source_options: expected a table per source, e.g. [source_options.creg] layers = [-2]")
        return PARAMS[name], [f"{src}.{k}={json.dumps(v)}" for src, opts in value.items() for k, v in opts.items()]
    if name in ("bench_options", "adapter_options") and isinstance(value, dict):
        return PARAMS[name], [f"{k}={json.dumps(v)}" for k, v in value.items()]
    if name == "registry":
        return PARAMS[name], [value] if isinstance(value, str) else list(value or [])
    if name == "max_failures" and value is not None:
        return name, str(value)
    return PARAMS.get(name, name), value


def default_map(path: str | Path, params: dict[str, Any], log=None) -> dict[str, Any]:
    """Click's ``default_map`` for a command whose parameters are ``params`` (name -> click.Parameter):
    every setting of the file as the default of its option, so that the command line overrides it."""
    settings, is_run = read_settings(path)
    out: dict[str, Any] = {}
    unknown = []
    for name, value in settings.items():
        param, v = option_value(name, value)
        if param not in params:
            if is_run:  # a field a newer creg wrote: not an option of this one
                if value not in (None, [], {}, ()) and log is not None:
                    log(f"creg: --config {path}: this creg run has no option for {name!r} (= {value!r}); ignored")
                continue
            unknown.append(name)
            continue
        if v is None:
            continue
        out[param] = v
    if unknown:
        names = {v: k for k, v in PARAMS.items()} | {"n": "limit"}
        known = sorted(names.get(n, n) for n in params if n != "config")
        raise ConfigFileError(f"--config {path}: unknown setting(s) {', '.join(sorted(unknown))}; "
                              f"settings: {', '.join(known)}")
    return out
