"""pyarrow.dataset, pandas, DuckDB and polars read DIR/population/ as it is, even while a write is in progress."""
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from popdata import row

from search.population import Population


@pytest.fixture
def population_dir(tmp_path: Path) -> Path:
    with Population.open(tmp_path, writer=True) as pop:
        pop.append([row("a"), row("b")])
        pop.append([row("c")])
    # what an append in progress looks like to a reader
    (tmp_path / "population" / ".part-00000002-deadbeef.parquet.1234.tmp").write_bytes(b"PAR1 torn")
    return tmp_path / "population"


def test_pyarrow_dataset(population_dir: Path) -> None:
    assert ds.dataset(population_dir, format="parquet").to_table().num_rows == 3
    assert pq.read_table(population_dir).num_rows == 3


def test_pandas(population_dir: Path) -> None:
    pd = pytest.importorskip("pandas")
    assert len(pd.read_parquet(population_dir)) == 3


def test_duckdb(population_dir: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"select count(*) from read_parquet('{population_dir}/*.parquet')").fetchone()[0]
    assert n == 3


def test_polars(population_dir: Path) -> None:
    pl = pytest.importorskip("polars")
    assert pl.read_parquet(f"{population_dir}/*.parquet").height == 3
