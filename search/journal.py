"""Where population rows are kept: the store contract, the Parquet journal, and an in-memory store."""
from __future__ import annotations

import abc
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Hashable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from search import atomic
from search.schema import conform

log = logging.getLogger(__name__)

POPULATION_DIR = "population"
_PART = re.compile(r"^part-(\d{8})-([0-9a-f]{32})\.parquet$")
_LOCK = ".writer.lock"
_DAMAGED = ".damaged-"    # prefix of a part set aside as damaged: a dot name, so no reader lists it
_HASHED = "c"             # at position 12 of a part's 32 hex digits: they are its content hash (a uuid4 has "4")


def _content_name(data: bytes) -> str:
    """The 32 hex digits naming a part: its SHA-256, marked as such. Parquet checksums cover data pages only; the
    name covers the footer too (schema, offsets), where a flipped bit would otherwise go unseen or misread."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    return digest[:12] + _HASHED + digest[13:]


def writer_alive(campaign_dir: str | Path) -> bool:
    """Whether a campaign driver holds the population's writer lock now (it is released when the driver dies)."""
    import fcntl
    try:
        fd = os.open(Path(campaign_dir) / POPULATION_DIR / _LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class JournalLockedError(RuntimeError):
    """A second writer tried to open a population that a live campaign driver is writing."""


class PopulationStore(abc.ABC):
    """Where population rows are kept.

    Contract, which every implementation meets (``tests/search/population_conformance.py`` checks it):

    - Append-only: ``append`` adds rows; no row, once appended, is ever changed or lost.
    - Atomic: a crash during ``append`` leaves all of its rows or none of them.
    - One writer: only the campaign driver appends or compacts. Readers may be any number of processes.
    - A reader may get a row more than once (the same ``eval_key``, e.g. across a compaction) and must keep the
      first; ``search.population.Population`` does.
    """

    @abc.abstractmethod
    def append(self, table: pa.Table) -> None:
        """Add the rows of ``table`` (``SCHEMA``) as one atomic unit. An empty table adds nothing."""

    @abc.abstractmethod
    def read_new(self, cursor: Hashable | None) -> tuple[list[pa.Table], Hashable]:
        """Rows appended since ``cursor`` (None: all rows), oldest first, and the cursor to pass next time."""

    @abc.abstractmethod
    def end(self) -> Hashable:
        """A cursor past every row stored now, reading nothing (a writer that knows what it wrote uses it)."""

    def compact(self) -> None:
        """Merge storage units; rows stay the same. The default does nothing."""


class MemoryStore(PopulationStore):
    """A store in one process's memory, for tests and dry runs. Nothing survives the process."""

    def __init__(self) -> None:
        self._tables: list[pa.Table] = []

    def append(self, table: pa.Table) -> None:
        table = conform(table)
        if table.num_rows:
            self._tables.append(table)

    def read_new(self, cursor: Hashable | None) -> tuple[list[pa.Table], Hashable]:
        start = int(cursor or 0)
        return list(self._tables[start:]), len(self._tables)

    def end(self) -> Hashable:
        return len(self._tables)


class ParquetJournal(PopulationStore):
    """An append-only journal of Parquet parts in ``CAMPAIGN_DIR/population/``.

    - Each ``append`` writes one new file ``part-<seq:08d>-<hash>.parquet`` (its content hash; older parts carry a
      uuid): written under a dot-prefixed temporary name in the same folder, fsynced, then ``os.replace``d. A part
      is either fully present or absent, and no existing part is ever modified. pyarrow.dataset, pandas, DuckDB and
      polars read the folder as it is (they skip dot-prefixed names and ``*.parquet`` globs do not match them).
    - A part whose bytes no longer match (truncated, overwritten, a flipped bit) is reported and its rows left out;
      the writer sets it aside as ``.damaged-<name>``.
    - One writer, the campaign driver, holds an exclusive ``flock`` on ``population/.writer.lock`` for as long as
      the journal is open for writing; the kernel releases it when the driver dies, even by SIGKILL.
    - Readers may be any process at any time. ``compact`` writes the merged part first and removes the merged parts
      afterwards, so a crash in between leaves duplicates (same ``eval_key``), which readers drop, and never a gap.
    """

    def __init__(self, campaign_dir: str | Path, *, writer: bool = False):
        self.dir = Path(campaign_dir) / POPULATION_DIR
        self.writer = writer
        self._lock_fd: int | None = None
        self._rows: dict[str, int] = {}   # part name -> row count, as far as this process knows
        if writer:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._remove_stale_temporaries()
        self._next_seq = max((self._seq(p) for p in self.parts()), default=-1) + 1

    def _lock(self) -> None:
        import fcntl
        fd = os.open(self.dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JournalLockedError(f"{self.dir} is being written by another campaign driver (pid {holder}); "
                                     "stop it first, or open the population read-only") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _remove_stale_temporaries(self) -> None:
        """Temporaries left by a writer that died mid-write; holding the lock, no one else can be writing them."""
        for name in os.listdir(self.dir):
            if name.startswith(".part-") and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).unlink()
                log.info("removed %s, left by an interrupted append", name)

    def close(self) -> None:
        """Release the writer lock (a no-op for readers)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "ParquetJournal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _seq(path: Path) -> int:
        return int(path.name[5:13])

    def parts(self) -> list[Path]:
        """The complete parts now present, oldest first."""
        if not self.dir.is_dir():
            return []
        return sorted((self.dir / n for n in os.listdir(self.dir) if _PART.match(n)), key=lambda p: p.name)

    def _check_writer(self) -> None:
        if self._lock_fd is None:
            raise PermissionError(f"{self.dir} was opened read-only; only the campaign driver writes it")

    def append(self, table: pa.Table) -> Path | None:
        """Write ``table`` as one new part; returns its path (None for an empty table)."""
        self._check_writer()
        table = conform(table)
        if table.num_rows == 0:
            return None
        path = self._write(table)
        log.debug("appended %d rows as %s", table.num_rows, path.name)
        return path

    def _write(self, table: pa.Table) -> Path:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", row_group_size=256 * 1024, write_page_checksum=True)
        data = sink.getvalue().to_pybytes()
        path = self.dir / f"part-{self._next_seq:08d}-{_content_name(data)}.parquet"
        self._next_seq += 1
        atomic.write_bytes(path, data)
        self._rows[path.name] = table.num_rows
        return path

    def read_new(self, cursor: Hashable | None) -> tuple[list[pa.Table], frozenset[str]]:
        """Parts not in ``cursor`` (a frozenset of part names). A part compacted away while being read is retried:
        its rows are in the merged part that replaced it."""
        known = frozenset(cursor or ())
        for _ in range(20):
            listing = self.parts()
            try:
                tables = [t for t in (self._read_part(p) for p in listing if p.name not in known) if t is not None]
            except FileNotFoundError:
                continue
            return tables, frozenset(p.name for p in listing)
        raise RuntimeError(f"{self.dir}: parts kept vanishing while being read; is a compaction looping?")

    def _read_part(self, path: Path) -> pa.Table | None:
        """A part's rows, its bytes checked against the hash in its name (and each page against its checksum);
        None for a damaged part (truncated, overwritten, bit rot), which is reported and, by the writer, set aside
        under a dot name that no reader lists, so that pandas, DuckDB and the next resume read the rest."""
        name_hash = _PART.match(path.name).group(2)
        if name_hash[12] == _HASHED and _content_name(path.read_bytes()) != name_hash:
            reason = "its bytes do not match the hash in its name"
        else:
            try:   # from the path, not from the bytes just hashed: pyarrow reads a file about twice as fast
                return pq.ParquetFile(path, page_checksum_verification=True).read()
            except FileNotFoundError:
                raise
            except (pa.ArrowException, OSError, ValueError) as e:
                reason = " ".join(str(e).split())[:160] or type(e).__name__
        aside = path.with_name(_DAMAGED + path.name)
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, aside)
                atomic.fsync_dir(self.dir)
        log.error("%s: damaged population part (%s); its rows are left out and those evaluations run again if "
                  "proposed%s", path, reason, f"; set aside as {aside.name}" if self._lock_fd is not None else
                  "; the campaign driver sets it aside when it next opens the population")
        return None

    def end(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts())

    def row_count(self, path: Path) -> int:
        if path.name not in self._rows:
            self._rows[path.name] = pq.ParquetFile(path).metadata.num_rows
        return self._rows[path.name]

    def compact(self, *, target_rows: int = 1_000_000, min_parts: int = 2) -> Path | None:
        """Merge the newest run of parts smaller than ``target_rows`` into one part; returns it, or None when
        the run has fewer than ``min_parts`` parts.

        For periodic compaction the driver calls ``compact(min_parts=N)`` after its appends: it does nothing until
        N small parts have piled up. Parts of ``target_rows`` or more are never rewritten.
        """
        self._check_writer()
        run: list[Path] = []
        for p in reversed(self.parts()):
            if self.row_count(p) >= target_rows:
                break
            run.insert(0, p)
        if len(run) < min_parts:
            return None
        tables = [t for t in map(self._read_part, run) if t is not None]   # a damaged part is set aside
        if not tables:
            return None
        merged = pa.concat_tables(tables, promote_options="default")
        path = self._write(conform(merged))
        for p in run:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            self._rows.pop(p.name, None)
        atomic.fsync_dir(self.dir)
        log.info("compacted %d parts (%d rows) into %s", len(run), merged.num_rows, path.name)
        return path
