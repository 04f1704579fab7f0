"""Rules from YAML: the shipped `default_rules.yaml`, merged with an optional override file;
`evaluate` runs a dataset's rules (the shipped ones unless given) over a table."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from sentinel_ray.quality.rules.context import Context
from sentinel_ray.quality.rules.ruleset import Evaluation, QualityRules, RuleSet
from sentinel_ray.quality.rules.spec import KINDS, build_rule
from sentinel_ray.schemas import DATA_DATASETS, Dataset

DEFAULT_RULES_FILE = "default_rules.yaml"


class RulesError(ValueError):
    """A rules file is unreadable or a rule in it is invalid; the message names file, dataset and rule."""


Specs = dict[str, list[dict[str, Any]]]


def default_rules_text() -> str:
    return (resources.files("sentinel_ray") / "quality" / DEFAULT_RULES_FILE).read_text()


@lru_cache(maxsize=1)
def default_rules() -> QualityRules:
    """The shipped rules (`default_rules.yaml`)."""
    return _build(_parse(default_rules_text(), f"<shipped {DEFAULT_RULES_FILE}>"))


def load_rules(path: Path | str | None = None) -> QualityRules:
    """The shipped rules merged with the override file at `path` (None: the shipped rules only).

    The override has the shipped file's shape (`dataset: [rule, ...]`) and is merged by rule
    name per dataset: a known name updates that rule's fields (a different `kind` replaces it
    whole), `enabled: false` drops it, a new name adds a rule at the end or at `before:` /
    `after:` another rule. Raises RulesError naming the file, dataset and rule at fault.
    """
    if path is None:
        return default_rules()
    path = Path(path).expanduser()
    try:
        stat = path.stat()
    except OSError as e:
        raise RulesError(f"quality rules file {path}: cannot read: {e.strerror}") from None
    return _load_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def rules_for(settings: Any) -> QualityRules:
    """The rules `settings` asks for: its `quality_rules_file` merged over the defaults."""
    return load_rules(getattr(settings, "quality_rules_file", None))


def evaluate(table: pa.Table, ds: Dataset, ctx: Context, rules: QualityRules | None = None) -> Evaluation:
    """`ds`'s rules (the shipped defaults unless `rules` is given) over `table`."""
    return (rules or default_rules()).for_dataset(ds).evaluate(table, ctx)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> QualityRules:  # mtime/size: reload when edited
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise RulesError(f"quality rules file {path}: cannot read: {e.strerror}") from None
    base = _parse(default_rules_text(), f"<shipped {DEFAULT_RULES_FILE}>")
    merged = _merge(base, _parse(text, path), path)
    return _build(merged, files=(path,))


def _parse(text: str, origin: str) -> Specs:
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise RulesError(f"quality rules file {origin}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise RulesError(f"quality rules file {origin}: must map dataset names to lists of rules")
    specs: Specs = {}
    for ds_name, rules in loaded.items():
        if ds_name not in DATA_DATASETS:
            raise RulesError(f"quality rules file {origin}: unknown dataset {ds_name!r}; "
                             f"known: {', '.join(DATA_DATASETS)}")
        if rules is None:
            rules = []
        if not isinstance(rules, list):
            raise RulesError(f"quality rules file {origin}: dataset {ds_name!r}: must be a list of rules")
        seen: set[str] = set()
        for i, spec in enumerate(rules):
            where = f"quality rules file {origin}: dataset {ds_name!r}, rule #{i + 1}"
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise RulesError(f"{where}: each rule is a mapping with a `name`")
            if spec["name"] in seen:
                raise RulesError(f"quality rules file {origin}: dataset {ds_name!r}, rule {spec['name']!r}: "
                                 f"listed twice")
            seen.add(spec["name"])
            spec["__origin"] = origin
        specs[ds_name] = list(rules)
    return specs


def _merge(base: Specs, override: Specs, origin: str) -> Specs:
    out = {name: [dict(s) for s in specs] for name, specs in base.items()}
    for ds_name, specs in override.items():
        current = out.setdefault(ds_name, [])
        for spec in specs:
            spec = dict(spec)
            name = spec["name"]
            where = f"quality rules file {origin}: dataset {ds_name!r}, rule {name!r}"
            before, after = spec.pop("before", None), spec.pop("after", None)
            enabled = spec.pop("enabled", True)
            if not isinstance(enabled, bool):
                raise RulesError(f"{where}: enabled must be true or false")
            names = [s["name"] for s in current]
            if name in names:
                i = names.index(name)
                old = current.pop(i)
                if not enabled:
                    continue
                same_kind = spec.get("kind", old.get("kind")) == old.get("kind")
                merged = {**old, **spec} if same_kind else spec
            else:
                if not enabled:
                    raise RulesError(f"{where}: no such rule to disable; rules: {', '.join(names)}")
                if "kind" not in spec:
                    raise RulesError(f"{where}: a new rule needs a `kind` (one of {', '.join(KINDS)})")
                merged, i = spec, len(current)
            if before is not None or after is not None:
                anchor = before if before is not None else after
                others = [s["name"] for s in current]
                if anchor not in others:
                    raise RulesError(f"{where}: before/after names no rule {anchor!r}; rules: {', '.join(others)}")
                i = others.index(anchor) + (0 if before is not None else 1)
            current.insert(i, merged)
    return out


def _build(specs: Specs, files: tuple[str, ...] = ()) -> QualityRules:
    # What a run applied, in a word: the merged specs (not the files: the same rules from
    # another override file are the same version).
    merged = {ds: [{k: v for k, v in spec.items() if k != "__origin"} for spec in rules] for ds, rules in specs.items()}
    version = hashlib.sha256(json.dumps(merged, sort_keys=True, default=str).encode()).hexdigest()[:12]
    sets: dict[str, RuleSet] = {}
    for ds_name, rules in specs.items():
        ds = DATA_DATASETS[ds_name]
        built = []
        for spec in rules:
            spec = dict(spec)
            origin = spec.pop("__origin", "?")
            spec.pop("enabled", None)
            try:
                built.append(build_rule(spec, ds))
            except ValueError as e:
                raise RulesError(f"quality rules file {origin}: dataset {ds_name!r}, rule {spec.get('name')!r}: "
                                 f"{e}") from None
        sets[ds_name] = RuleSet(ds_name, tuple(built))
    return QualityRules(sets, files, version)
