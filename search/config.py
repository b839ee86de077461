"""Campaign file: a TOML file loaded once, at the entry point, into nested frozen dataclasses.

Paths are absolute or relative to the campaign file. An unknown key, a wrong type or a missing path raises
``ConfigError`` whose message names the file, the dotted key (``budget.max_evaluations``, ``problems[1].path``)
and what to do about it.
"""
from __future__ import annotations

import dataclasses
import difflib
import glob
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

from cluster.hardware import device_kind
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from proposers import proposer_kinds
from search import atomic

PROPOSER_KINDS = proposer_kinds()     # what this version can build; an unknown kind fails at load

# Kind-specific keys of a [[proposers]] table and their TOML types; anything else is an unknown key.
# Extend here when a proposer grows an option. ``Path`` values are resolved against the campaign file.
PROPOSER_OPTIONS: dict[str, dict[str, Any]] = {
    "rewrites": {"compile_limit": int},
    "optuna": {"sampler": str, "objective": str, "templates": tuple[str, ...], "seed": int},
    "files": {"dir": Path},
    # the LLM swarm (proposers/llm); the budget's max_tokens and max_cost_usd and the campaign directory are added
    # by with_llm_context, not written here
    "llm": {"model": str, "provider": str, "base_url": str, "concurrency": int, "roles": tuple[str, ...],
            "backends": tuple[str, ...], "ideas_per_call": int, "fix_rounds": int, "parents": int,
            "max_response_tokens": int, "temperature": float, "max_retries": int, "timeout_s": float,
            "price_input_per_mtok": float, "price_output_per_mtok": float, "api_key_env": str, "guidance": str},
}
_REQUIRED_OPTIONS = {"files": ("dir",)}

SNAPSHOT_TOML = "campaign.toml"
SNAPSHOT_JSON = "campaign.json"


class ConfigError(ValueError):
    """A campaign file that cannot be used; the message names the file and the key."""


def _positive(**extra: Any) -> dict[str, Any]:
    return {"min": 1, **extra}


@dataclasses.dataclass(frozen=True)
class CampaignSection:
    name: str
    out: Path
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Budget:
    """Stop criteria; the campaign stops at the first limit reached."""

    max_evaluations: int = dataclasses.field(metadata=_positive())
    max_minutes: float = dataclasses.field(metadata={"min": 0.0, "exclusive": True})
    max_generations: int | None = dataclasses.field(default=None, metadata=_positive())
    max_tokens: int | None = dataclasses.field(default=None, metadata=_positive())
    max_cost_usd: float | None = dataclasses.field(default=None, metadata={"min": 0.0, "exclusive": True})


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    path: str                          # as written: a file or a glob
    files: tuple[Path, ...]            # what it expands to, sorted, after the ``levels`` filter
    scale: str = "default"
    levels: tuple[str, ...] | None = None   # parent folder names kept, e.g. ("level1", "level2")


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    hardware: str
    wait_s: float = dataclasses.field(default=0.0, metadata={"min": 0.0})


@dataclasses.dataclass(frozen=True)
class ProposerSpec:
    """``options`` holds the kind-specific keys (``dir``, ``model``, ``sampler``...); treat it as read-only."""

    kind: str
    name: str
    per_generation: int = 8
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Evolution:
    population_per_island: int = dataclasses.field(default=32, metadata=_positive())
    parents: int = dataclasses.field(default=4, metadata=_positive())
    migration_every: int = dataclasses.field(default=5, metadata=_positive())   # generations
    migrants: int = dataclasses.field(default=2, metadata={"min": 0})
    near_duplicate: float = dataclasses.field(default=0.95, metadata={"min": 0.0})  # source similarity cut-off


@dataclasses.dataclass(frozen=True)
class CampaignConfig:
    source: Path                       # the campaign file this was loaded from
    campaign: CampaignSection
    budget: Budget
    problems: tuple[ProblemSpec, ...]
    targets: tuple[TargetSpec, ...]
    proposers: tuple[ProposerSpec, ...]
    verify: VerifyPolicy = VerifyPolicy()
    timing: TimingPolicy = TimingPolicy()
    evolution: Evolution = Evolution()

    @property
    def problem_files(self) -> tuple[Path, ...]:
        """Every problem file once, in order of first appearance."""
        return tuple(dict.fromkeys(f for p in self.problems for f in p.files))

    def bench_request(self, problem_path: str, source: str, hardware: str, scale: str, cache_dir: str | Path, *,
                      rounds: int) -> EvalRequest:
        """The benchmark of one candidate on one hardware class under this campaign's policies; ``rounds`` is the
        number of candidate/baseline sandwiches (one in the search, two when an export re-measures)."""
        return EvalRequest(problem_path=problem_path, candidate_source=source, device=device_kind(hardware),
                           mode="bench", scale=scale, verify=self.verify,
                           timing=dataclasses.replace(self.timing, rounds=rounds), cache_dir=str(cache_dir))


class _Reader:
    """Type-checks values of one TOML table and reports errors with the file and dotted key."""

    def __init__(self, file: Path):
        self.file = file
        self.base = file.parent

    def fail(self, key: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self.file}: {key}: {message}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected a table [{key}], got {_describe(value)}")
        return dict(value)

    def array_of_tables(self, value: Any, key: str) -> list[dict[str, Any]]:
        if isinstance(value, dict):
            self.fail(key, f"expected an array of tables: write [[{key}]] (double brackets), not [{key}]")
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"expected one or more [[{key}]] tables, got {_describe(value)}")
        return [dict(v) for v in value]

    def reject_unknown(self, data: dict[str, Any], valid: typing.Iterable[str], key: str) -> None:
        valid = list(valid)
        for name in data:
            dotted = f"{key}.{name}" if key else name
            hint = difflib.get_close_matches(name, valid, n=1)
            did_you_mean = f"did you mean '{hint[0]}'? " if hint else ""
            self.fail(dotted, f"unknown key; {did_you_mean}valid keys here: {', '.join(valid)} "
                              "(unknown keys are errors, not ignored)")

    def value(self, value: Any, hint: Any, key: str) -> Any:
        """Check ``value`` against the annotation ``hint`` and convert it (lists to tuples, paths resolved)."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            return self.value(value, inner[0], key)
        if origin is Literal:
            if value not in args:
                self.fail(key, f"expected one of {', '.join(map(repr, args))}, got {value!r}")
            return value
        if origin is tuple:
            if not isinstance(value, list):
                self.fail(key, f"expected a list, e.g. {key.rsplit('.', 1)[-1]} = [...], got {_describe(value)}")
            return tuple(self.value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if hint is Path:
            p = Path(self.value(value, str, key)).expanduser()
            return p if p.is_absolute() else (self.base / p).resolve()
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if hint in (int, float, str, bool) and (type(value) is hint):
            return value
        if hint in (int, float, bool) and isinstance(value, str):
            self.fail(key, f"expected {_NAMES[hint]}, got {_describe(value)}; write it without quotes")
        if hint in (int, float, str, bool):
            self.fail(key, f"expected {_NAMES[hint]}, got {_describe(value)}")
        raise TypeError(f"unsupported annotation {hint!r} for {key}")

    def dataclass(self, cls: type, data: Any, key: str, **given: Any) -> Any:
        """Build ``cls`` from a TOML table: every field checked, required ones demanded, unknown keys refused."""
        data = self.table(data, key)
        names = [f.name for f in dataclasses.fields(cls) if f.name not in given]
        self.reject_unknown({k: v for k, v in data.items() if k not in names}, names, key)
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = dict(given)
        for f in dataclasses.fields(cls):
            if f.name in given:
                continue
            dotted = f"{key}.{f.name}"
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.fail(dotted, f"missing; add {f.name} = ... to the [{key}] table")
                continue
            kwargs[f.name] = self.value(data.pop(f.name), hints[f.name], dotted)
            self._check_bounds(f, kwargs[f.name], dotted)
        return cls(**kwargs)

    def _check_bounds(self, f: dataclasses.Field, v: Any, key: str) -> None:
        low = f.metadata.get("min")
        if low is None or v is None:
            return
        if v < low or (f.metadata.get("exclusive") and v == low):
            self.fail(key, f"must be {'>' if f.metadata.get('exclusive') else '>='} {low}, got {v!r}")


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})" if not isinstance(value, (dict, list)) else kind


def load_config(path: str | Path, *, out: str | Path | None = None) -> CampaignConfig:
    """Load and check a campaign file. ``out`` (relative to the working directory) overrides ``campaign.out``."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(f"{file}: campaign file not found; pass the path of a .toml campaign file")
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {e}") from None
    r = _Reader(file)
    sections = {"campaign", "budget", "problems", "targets", "proposers", "verify", "timing", "evolution"}
    for required in ("campaign", "budget", "problems", "targets", "proposers"):
        if required not in data:
            r.fail(required, f"missing; add a [{required}] table" if required in ("campaign", "budget")
                   else f"missing; add at least one [[{required}]] table")
    r.reject_unknown({k: v for k, v in data.items() if k not in sections}, sorted(sections), "")

    camp = r.table(data["campaign"], "campaign")
    name = r.value(camp.get("name"), str, "campaign.name") if "name" in camp else r.fail(
        "campaign.name", "missing; add name = \"...\" to the [campaign] table")
    camp.setdefault("out", f"runs/{name}")
    campaign = r.dataclass(CampaignSection, camp, "campaign")
    if out is not None:
        campaign = dataclasses.replace(campaign, out=Path(out).expanduser().resolve())

    targets = tuple(r.dataclass(TargetSpec, t, f"targets[{i}]")
                    for i, t in enumerate(r.array_of_tables(data["targets"], "targets")))
    seen = [t.hardware for t in targets]
    for i, hw in enumerate(seen):
        if not hw:
            r.fail(f"targets[{i}].hardware", "must not be empty; name a hardware class such as \"cpu\"")
        if hw in seen[:i]:
            r.fail(f"targets[{i}].hardware", f"{hw!r} is listed twice; keep one [[targets]] per hardware class")

    return with_llm_context(CampaignConfig(
        source=file, campaign=campaign,
        budget=r.dataclass(Budget, data["budget"], "budget"),
        problems=tuple(_problem(r, p, f"problems[{i}]")
                       for i, p in enumerate(r.array_of_tables(data["problems"], "problems"))),
        targets=targets,
        proposers=_proposers(r, r.array_of_tables(data["proposers"], "proposers")),
        verify=r.dataclass(VerifyPolicy, data.get("verify", {}), "verify"),
        timing=r.dataclass(TimingPolicy, data.get("timing", {}), "timing"),
        evolution=r.dataclass(Evolution, data.get("evolution", {}), "evolution"),
    ))


def _problem(r: _Reader, data: dict[str, Any], key: str) -> ProblemSpec:
    if "path" not in data:
        r.fail(f"{key}.path", "missing; add path = \"problems/level1/*.py\" (a file or a glob)")
    pattern = r.value(data.pop("path"), str, f"{key}.path")
    scale = r.value(data.pop("scale"), str, f"{key}.scale") if "scale" in data else "default"
    levels = None
    if "levels" in data:
        raw = data.pop("levels")
        if not isinstance(raw, list) or not raw:
            r.fail(f"{key}.levels", f"expected a non-empty list such as [1, 2], got {_describe(raw)}")
        levels = tuple(_level(r, v, f"{key}.levels[{i}]") for i, v in enumerate(raw))
    r.reject_unknown(data, ["path", "scale", "levels"], key)
    full = Path(pattern).expanduser()
    full = full if full.is_absolute() else r.base / full
    files = sorted(Path(p).resolve() for p in glob.glob(str(full), recursive=True)
                   if Path(p).is_file() and Path(p).name != "__init__.py")
    if not files:
        r.fail(f"{key}.path", f"{pattern!r} matches no file (looked for {full}); paths are relative to the "
                              "campaign file's folder")
    if levels is not None:
        files = [f for f in files if f.parent.name in levels]
        if not files:
            r.fail(f"{key}.levels", f"no file of {pattern!r} lies in a folder named {', '.join(levels)}")
    return ProblemSpec(path=pattern, files=tuple(files), scale=scale, levels=levels)


def _level(r: _Reader, v: Any, key: str) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"level{v}"
    if isinstance(v, str) and v:
        return v
    r.fail(key, f"expected a level number such as 1 or a folder name such as \"level1\", got {_describe(v)}")


def _proposers(r: _Reader, tables: list[dict[str, Any]]) -> tuple[ProposerSpec, ...]:
    specs: list[ProposerSpec] = []
    for i, data in enumerate(tables):
        key = f"proposers[{i}]"
        if "kind" not in data:
            r.fail(f"{key}.kind", f"missing; add kind = one of {', '.join(map(repr, PROPOSER_KINDS))}")
        kind = r.value(data.pop("kind"), Literal[PROPOSER_KINDS], f"{key}.kind")  # type: ignore[valid-type]
        name = r.value(data.pop("name"), str, f"{key}.name") if "name" in data else kind
        per_gen = r.value(data.pop("per_generation"), int, f"{key}.per_generation") \
            if "per_generation" in data else ProposerSpec.per_generation
        if per_gen < 1:
            r.fail(f"{key}.per_generation", f"must be >= 1, got {per_gen}")
        allowed = PROPOSER_OPTIONS[kind]
        options = {k: r.value(data.pop(k), allowed[k], f"{key}.{k}") for k in list(data) if k in allowed}
        r.reject_unknown(data, ["kind", "name", "per_generation", *allowed], key)
        for req in _REQUIRED_OPTIONS.get(kind, ()):
            if req not in options:
                r.fail(f"{key}.{req}", f"missing; a {kind!r} proposer needs {req} = ...")
        for k, v in options.items():
            if allowed[k] is Path and not v.exists():
                r.fail(f"{key}.{k}", f"{v} does not exist; create it or fix the path (relative to the campaign "
                                     "file's folder)")
        if name in (s.name for s in specs):
            r.fail(f"{key}.name", f"{name!r} is used twice; give each proposer a distinct name = \"...\"")
        if kind == "llm":
            _check_llm(r, key, options)
        specs.append(ProposerSpec(kind=kind, name=name, per_generation=per_gen, options=options))
    return tuple(specs)


def config_to_dict(config: CampaignConfig) -> dict[str, Any]:
    """A JSON-able dict of the resolved config: paths absolute, globs expanded."""
    return _jsonable(dataclasses.asdict(config))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return str(x) if isinstance(x, Path) else x


def config_from_dict(d: dict[str, Any]) -> CampaignConfig:
    """Inverse of ``config_to_dict``; paths are taken as recorded, not checked again."""
    def build(cls: type, data: dict[str, Any]) -> Any:
        hints = typing.get_type_hints(cls)
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                v, h = data[f.name], hints[f.name]
                kw[f.name] = (Path(v) if h is Path else tuple(v) if isinstance(v, list) and h is not dict else v)
        return cls(**kw)

    return CampaignConfig(
        source=Path(d["source"]), campaign=build(CampaignSection, d["campaign"]),
        budget=build(Budget, d["budget"]),
        problems=tuple(ProblemSpec(path=p["path"], files=tuple(Path(f) for f in p["files"]), scale=p["scale"],
                                   levels=None if p["levels"] is None else tuple(p["levels"]))
                       for p in d["problems"]),
        targets=tuple(build(TargetSpec, t) for t in d["targets"]),
        proposers=tuple(ProposerSpec(kind=p["kind"], name=p["name"], per_generation=p["per_generation"],
                                     options={k: Path(v) if PROPOSER_OPTIONS[p["kind"]].get(k) is Path
                                              else tuple(v) if isinstance(v, list) else v
                                              for k, v in p["options"].items()})
                        for p in d["proposers"]),
        verify=build(VerifyPolicy, d["verify"]), timing=build(TimingPolicy, d["timing"]),
        evolution=build(Evolution, d["evolution"]),
    )


def write_snapshot(config: CampaignConfig, campaign_dir: str | Path | None = None, *,
                   overwrite: bool = False) -> Path:
    """Freeze the campaign into its directory: a byte copy of the TOML file and the resolved JSON.

    A directory that already holds a different campaign is refused unless ``overwrite``; resuming reads the
    snapshot (``load_snapshot``), so an edited campaign file cannot change a running campaign behind its back.
    """
    directory = Path(campaign_dir) if campaign_dir is not None else config.campaign.out
    directory.mkdir(parents=True, exist_ok=True)
    resolved = json.dumps(config_to_dict(config), indent=2, sort_keys=True)
    existing = directory / SNAPSHOT_JSON
    if existing.exists() and not overwrite and json.loads(existing.read_text()) != json.loads(resolved):
        raise ConfigError(f"{directory}: already holds a different campaign ({existing}); resume it with "
                          "`kswarm resume`, or pass another --out")
    atomic.write_bytes(directory / SNAPSHOT_TOML, config.source.read_bytes())
    atomic.write_text(existing, resolved + "\n")
    return existing


def load_snapshot(campaign_dir: str | Path) -> CampaignConfig:
    """The config frozen by ``write_snapshot``."""
    path = Path(campaign_dir) / SNAPSHOT_JSON
    if not path.is_file():
        raise ConfigError(f"{path}: no campaign snapshot; is {campaign_dir} a campaign directory?")
    return with_llm_context(config_from_dict(json.loads(path.read_text())), Path(campaign_dir))


def _check_llm(r: _Reader, key: str, options: dict[str, Any]) -> None:
    """The values of an llm proposer's options that the proposer would refuse only when the campaign starts."""
    from proposers.llm.clients import PROVIDERS
    from proposers.llm.proposer import ROLES
    if options.get("provider", "anthropic") not in PROVIDERS:
        r.fail(f"{key}.provider", f"expected one of {', '.join(map(repr, PROVIDERS))}, got {options['provider']!r}")
    roles = options.get("roles", ROLES)
    for i, role in enumerate(roles):
        if role not in ROLES:
            r.fail(f"{key}.roles[{i}]", f"{role!r} is not one of {', '.join(map(repr, ROLES))}")
    if "coder" not in roles:
        r.fail(f"{key}.roles", "must include \"coder\" (the role that writes candidates)")
    for name in ("concurrency", "ideas_per_call", "max_response_tokens"):
        if name in options and options[name] < 1:
            r.fail(f"{key}.{name}", f"must be >= 1, got {options[name]}")
    for name in ("fix_rounds", "parents", "max_retries", "temperature", "timeout_s", "price_input_per_mtok",
                 "price_output_per_mtok"):
        if name in options and options[name] < 0:
            r.fail(f"{key}.{name}", f"must be >= 0, got {options[name]}")
    if options.get("provider") == "openai" and "base_url" not in options:
        r.fail(f"{key}.base_url", "missing; an OpenAI-compatible endpoint needs base_url = \"http://host:port/v1\"")


def with_llm_context(config: CampaignConfig, campaign_dir: Path | None = None) -> CampaignConfig:
    """``config`` with each llm proposer's options completed by what the campaign knows: its directory (the
    response cache, the ledger and guidance.jsonl live there; a resumed directory is where it is now) and the
    budget's max_tokens and max_cost_usd, which the proposers count against together."""
    where = str(campaign_dir if campaign_dir is not None else config.campaign.out)
    specs = tuple(dataclasses.replace(s, options={**s.options, "campaign_dir": where,
                                                  "budget_tokens": config.budget.max_tokens,
                                                  "budget_cost_usd": config.budget.max_cost_usd})
                  if s.kind == "llm" else s for s in config.proposers)
    return dataclasses.replace(config, proposers=specs)
