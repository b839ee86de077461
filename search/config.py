"""Campaign file: a TOML file loaded once, at the entry point, into nested frozen dataclasses.

Paths are absolute or relative to the campaign file. An unknown key, a wrong type or a missing path raises
``ConfigError`` whose message names the file, the dotted key (``budget.max_evaluations``, ``problems[1].path``)
and what to do about it.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import re
from pathlib import Path
from typing import Any, Literal

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

from evaluators.hardware import device_kind
from evaluators.policy import PROBES, EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.problem import BadInput, check_problem_source, read_source
from proposers import proposer_kinds
from search.toml_reader import ConfigError, Reader as _Reader, clip as _clip, describe as _describe

log = logging.getLogger(__name__)
PROPOSER_KINDS = proposer_kinds()     # what this version can build; an unknown kind fails at load

# Kind-specific keys of a [[proposers]] table and their TOML types; anything else is an unknown key.
# Extend here when a proposer grows an option. ``Path`` values are resolved against the campaign file.
PROPOSER_OPTIONS: dict[str, dict[str, Any]] = {
    "rewrites": {"compile_limit": int},
    "optuna": {"sampler": str, "objective": str, "templates": tuple[str, ...], "seed": int},
    "files": {"dir": Path},
    "fusion": {},
    "cuda_graphs": {"top": int},
    # the LLM swarm (proposers/llm); the budget's max_tokens and max_cost_usd and the campaign directory are added
    # by with_llm_context, not written here
    "llm": {"model": str, "provider": str, "base_url": str, "concurrency": int, "roles": tuple[str, ...],
            "backends": tuple[str, ...], "ideas_per_call": int, "fix_rounds": int, "parents": int,
            "max_response_tokens": int, "temperature": float, "max_retries": int, "timeout_s": float,
            "price_input_per_mtok": float, "price_output_per_mtok": float, "api_key_env": str, "guidance": str,
            "tune_trials": int},
}
_REQUIRED_OPTIONS = {"files": ("dir",)}


def _positive(**extra: Any) -> dict[str, Any]:
    return {"min": 1, **extra}


CACHE_NODE, CACHE_CAMPAIGN = "node", "campaign"      # the named values of [campaign] cache

# at least a second (RLIMIT_CPU counts whole seconds), at most about 35,000 years: a finite limit the kernel takes
_CPU_TIME_BOUNDS = {"min": 1.0, "max": 2.0**40}


@dataclasses.dataclass(frozen=True)
class CampaignSection:
    name: str
    out: Path
    seed: int = 0
    # build and baseline caches: "node" (each evaluating node's own, shared by every campaign and bench on it:
    # $KSWARM_CACHE or ~/.cache/kernelswarm), "campaign" (the campaign directory's own, measured afresh), or a folder
    cache: str = CACHE_NODE

    def cache_dir(self, out: Path) -> Path | None:
        """The cache folder evaluation requests name for a campaign in ``out``; None: the evaluating node's own."""
        if self.cache == CACHE_NODE:
            return None
        return Path(out) / "cache" if self.cache == CACHE_CAMPAIGN else Path(self.cache)


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
    # candidates verified at once on one device (timing stays exclusive); None: 1 on a CPU, 2 on a GPU
    verify_slots: int | None = dataclasses.field(default=None, metadata=_positive())
    # evaluations one device's evaluator holds beyond its verify slots, building on the host's cores (a build holds
    # no device slot) so that a freed verify slot finds a built candidate; None: as many as the verify slots on a
    # GPU, none on a CPU (where the build and the verification share the same cores)
    build_ahead: int | None = dataclasses.field(default=None, metadata={"min": 0})


@dataclasses.dataclass(frozen=True)
class ProposerSpec:
    """``options`` holds the kind-specific keys (``dir``, ``model``, ``sampler``...); treat it as read-only."""

    kind: str
    name: str
    per_generation: int = 8
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SandboxSection:
    """``[sandbox]``: limits of a candidate's process tree, folded into the verify policy, whose defaults apply to
    what is not set. ``[verify]`` takes the same limits under the policy's names; each may be set in one place."""

    wall_clock_s: float | None = dataclasses.field(default=None, metadata={"min": 0.0, "exclusive": True})
    memory_mb: int | None = dataclasses.field(default=None, metadata=_positive())   # the floor of the memory limit
    max_processes: int | None = dataclasses.field(default=None, metadata=_positive())
    max_file_mb: int | None = dataclasses.field(default=None, metadata={"min": 1, "max": 2**43})
    # CPU seconds of a candidate's process (RLIMIT_CPU); unset: twice wall_clock_s on each CPU of the evaluator
    cpu_time_s: float | None = dataclasses.field(default=None, metadata=_CPU_TIME_BOUNDS)


_SANDBOX_TO_VERIFY = {"wall_clock_s": "timeout_s", "memory_mb": "memory_mb", "max_processes": "max_processes",
                      "max_file_mb": "max_file_mb", "cpu_time_s": "cpu_time_s"}


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

    def verify_slots(self, hardware: str) -> int:
        """Concurrent verify slots per device of ``hardware`` (one exclusive timing slot besides)."""
        for t in self.targets:
            if t.hardware == hardware and t.verify_slots is not None:
                return t.verify_slots
        return 1 if device_kind(hardware) == "cpu" else 2

    def build_ahead(self, hardware: str) -> int:
        """Evaluations per device of ``hardware`` held beyond its verify slots, building."""
        for t in self.targets:
            if t.hardware == hardware and t.build_ahead is not None:
                return t.build_ahead
        # a CPU device builds one more candidate while another is verified (builds never overlap its timing)
        return 1 if device_kind(hardware) == "cpu" else self.verify_slots(hardware)

    def in_flight(self, hardware: str) -> int:
        """Evaluations one device of ``hardware`` holds at once: its verify slots and the builds ahead of them."""
        return self.verify_slots(hardware) + self.build_ahead(hardware)

    def bench_request(self, problem_path: str, source: str, hardware: str, scale: str, cache_dir: str | Path | None, *,
                      rounds: int, processes: int | None = None) -> EvalRequest:
        """The benchmark of one candidate on one hardware class under this campaign's policies; ``rounds`` is the
        number of candidate/baseline sandwiches (one in the search, two when an export re-measures), ``processes``
        the pairs of fresh processes the timing is spread over (None: the campaign's ``[timing] processes``)."""
        timing = dataclasses.replace(self.timing, rounds=rounds,
                                     processes=self.timing.processes if processes is None else processes)
        return EvalRequest(problem_path=problem_path, candidate_source=source, device=device_kind(hardware),
                           mode="bench", scale=scale, verify=self.verify, timing=timing,
                           cache_dir=None if cache_dir is None else str(cache_dir))


# Bounds of the evaluator's policies (which carry no field metadata of their own): a zero timeout or a negative
# memory limit would turn every candidate into a confusing failure instead of one clear error here.
_NONNEG, _POS, _POS_EXCL = {"min": 0}, {"min": 1}, {"min": 0.0, "exclusive": True}
_POLICY_BOUNDS: dict[type, dict[str, dict[str, Any]]] = {
    VerifyPolicy: {"trials": _POS, "probes": {"choices": PROBES}, "atol_fp32": _NONNEG, "rtol_fp32": _NONNEG,
                   "atol_half": _NONNEG, "rtol_half": _NONNEG, "timed_checks": _NONNEG, "timeout_s": _POS_EXCL, "whole_checks": _POS,
                   "compile_allowance_s": _POS_EXCL, "memory_multiple": {"min": 1.0}, "memory_floor_mb": _POS,
                   "memory_mb": _POS, "max_processes": _POS, "max_file_mb": {"min": 1, "max": 2**43},
                   "cpu_time_s": _CPU_TIME_BOUNDS},
    TimingPolicy: {"warmup": _NONNEG, "min_samples": _POS, "max_samples": _POS, "ci_target": _POS_EXCL,
                   "time_cap_s": _POS_EXCL, "launch_overhead_us": _NONNEG, "rounds": _POS,
                   "processes": {"min": 1, "max": 16},
                   "min_blocks": {"min": 6}, "max_blocks": {"min": 6},
                   "baselines": {"choices": ("eager", "compile"), "nonempty": True}},
}
_NAME = re.compile(r"^[\w.-][\w. -]{0,99}$")     # a campaign's name: a folder and a file name


def load_config(path: str | Path, *, out: str | Path | None = None) -> CampaignConfig:
    """Load and check a campaign file. ``out`` (relative to the working directory) overrides ``campaign.out``."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(f"{file}: campaign file not found; pass the path of a .toml campaign file")
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise ConfigError(f"{file}: cannot read the campaign file ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: not a TOML campaign file: byte {e.start} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {' '.join(str(e).split())}") from None
    r = _Reader(file, _POLICY_BOUNDS)
    sections = {"campaign", "budget", "problems", "targets", "proposers", "verify", "sandbox", "timing", "evolution"}
    for required in ("campaign", "budget", "problems", "targets", "proposers"):
        if required not in data:
            r.fail(required, f"missing; add a [{required}] table" if required in ("campaign", "budget")
                   else f"missing; add at least one [[{required}]] table")
    r.reject_unknown({k: v for k, v in data.items() if k not in sections}, sorted(sections), "")

    camp = r.table(data["campaign"], "campaign")
    name = r.value(camp.get("name"), str, "campaign.name") if "name" in camp else r.fail(
        "campaign.name", "missing; add name = \"...\" to the [campaign] table")
    if not _NAME.match(name) or name in (".", ".."):
        r.fail("campaign.name", f"{_clip(repr(name))} is not a usable name; use letters, digits, '.', '_', '-' "
                                "or spaces (it names the campaign's folder and its rows)")
    camp.setdefault("out", f"runs/{name}")
    campaign = r.dataclass(CampaignSection, camp, "campaign")
    if campaign.cache not in (CACHE_NODE, CACHE_CAMPAIGN):
        if not campaign.cache.strip():
            r.fail("campaign.cache", f"must not be empty; write \"{CACHE_NODE}\", \"{CACHE_CAMPAIGN}\" or a folder")
        folder = Path(campaign.cache).expanduser()
        folder = folder if folder.is_absolute() else (file.parent / folder)
        if folder.exists() and not folder.is_dir():
            r.fail("campaign.cache", f"{folder} is not a folder; name a folder (it is created when missing), "
                                     f"or write \"{CACHE_NODE}\" or \"{CACHE_CAMPAIGN}\"")
        campaign = dataclasses.replace(campaign, cache=str(folder.resolve()))
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
        verify=_verify_policy(r, data),
        timing=r.dataclass(TimingPolicy, data.get("timing", {}), "timing"),
        evolution=r.dataclass(Evolution, data.get("evolution", {}), "evolution"),
    ))


def _verify_policy(r: _Reader, data: dict[str, Any]) -> VerifyPolicy:
    """``[verify]`` with the limits of ``[sandbox]`` folded in."""
    table = r.table(data.get("verify", {}), "verify")
    sandbox = r.dataclass(SandboxSection, data.get("sandbox", {}), "sandbox")
    for key, name in _SANDBOX_TO_VERIFY.items():
        if getattr(sandbox, key) is None:
            continue
        if name in table:
            r.fail(f"sandbox.{key}", f"also set as verify.{name}; keep one of the two")
        table[name] = getattr(sandbox, key)
    return r.dataclass(VerifyPolicy, table, "verify")


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


def check_problem_files(config: CampaignConfig) -> None:
    """Raise ConfigError naming the first problem file that does not parse or lacks Model, get_inputs or
    get_init_inputs (read and parsed, never executed), so that a campaign does not start on a broken problem."""
    r = _Reader(config.source, _POLICY_BOUNDS)
    for i, spec in enumerate(config.problems):
        for f in spec.files:
            try:
                check_problem_source(read_source(f, "problem"), str(f))
            except BadInput as e:
                r.fail(f"problems[{i}].path", str(e))


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
                 "price_output_per_mtok", "tune_trials"):
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
