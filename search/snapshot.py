"""A campaign frozen into its directory: a byte copy of its TOML file and the resolved config as JSON, written
when it starts (``write_snapshot``) and read by every later command (``load_snapshot``), so that an edited campaign
file cannot change a running campaign behind its back."""
from __future__ import annotations

import dataclasses
import json
import logging
import typing
from pathlib import Path
from typing import Any

from evaluators.policy import TimingPolicy, VerifyPolicy
from search import atomic
from search.config import (CACHE_CAMPAIGN, PROPOSER_OPTIONS, Budget, CampaignConfig, CampaignSection, ConfigError,
                           Evolution, ProblemSpec, ProposerSpec, TargetSpec, with_llm_context)
from search.toml_reader import clip

log = logging.getLogger(__name__)

SNAPSHOT_TOML = "campaign.toml"
SNAPSHOT_JSON = "campaign.json"


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

    # a snapshot from before the cache key measured its baselines in the campaign's own folder: it resumes so
    return CampaignConfig(
        source=Path(d["source"]), campaign=build(CampaignSection, {"cache": CACHE_CAMPAIGN, **d["campaign"]}),
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
    if existing.exists() and not overwrite and _recorded(existing) != json.loads(resolved):
        if never_started(directory):
            raise ConfigError(f"{directory}: already holds a different campaign, which never started (no "
                              f"evaluation recorded); delete {directory}, or pass another --out")
        raise ConfigError(f"{directory}: already holds a different campaign ({existing}); resume it with "
                          "`kswarm resume`, or pass another --out")
    atomic.write_bytes(directory / SNAPSHOT_TOML, config.source.read_bytes())
    atomic.write_text(existing, resolved + "\n")
    return existing


def _recorded(snapshot: Path) -> Any:
    """The snapshot's JSON; a damaged one reads as None (different from any campaign)."""
    try:
        return json.loads(snapshot.read_bytes())
    except (OSError, ValueError):
        return None


def never_started(directory: str | Path) -> bool:
    """No evaluation recorded, none dispatched (no checkpoint) and no live driver: nothing a resume would need."""
    from search.checkpoint import BACKUP_FILE, CHECKPOINT_FILE
    from search.journal import ParquetJournal, writer_alive
    directory = Path(directory)
    return (not any((directory / f).exists() for f in (CHECKPOINT_FILE, BACKUP_FILE))
            and not ParquetJournal(directory).parts() and not writer_alive(directory))


def forget_unstarted(directory: str | Path) -> bool:
    """Remove the snapshot of a campaign that never started, so that its directory is not taken later for a
    campaign to resume; returns whether it did. A campaign with anything recorded or dispatched is left alone."""
    directory = Path(directory)
    if not (directory / SNAPSHOT_JSON).exists() or not never_started(directory):
        return False
    (directory / SNAPSHOT_JSON).unlink(missing_ok=True)    # first: without it the folder is no campaign
    (directory / SNAPSHOT_TOML).unlink(missing_ok=True)
    atomic.fsync_dir(directory)
    log.info("%s: removed the snapshot of a campaign that never started", directory)
    return True


def load_snapshot(campaign_dir: str | Path) -> CampaignConfig:
    """The config frozen by ``write_snapshot``."""
    path = Path(campaign_dir) / SNAPSHOT_JSON
    if not path.is_file():
        raise ConfigError(f"{path}: no campaign snapshot; is {campaign_dir} a campaign directory?")
    try:
        return with_llm_context(config_from_dict(json.loads(path.read_bytes())), Path(campaign_dir))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: damaged campaign snapshot ({type(e).__name__}: {clip(str(e))}); "
                          f"{SNAPSHOT_TOML} beside it is the campaign file it was made from") from None
