"""``creg export RUN --format csv|parquet``: wide and long forms, read back equal to the run store."""

from __future__ import annotations

import sys

import pytest
import torch
from click.testing import CliRunner

from creg.cli import cli
from creg.execution.runner import Runner, RunConfig
from creg.store import RunStore

torch.set_num_threads(1)
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    Runner(RunConfig(sources=["oracle", "random"], n=5), out, progress=False, log=lambda m: None).run()
    return out


def test_wide_csv_has_a_row_per_sample_and_source(run, tmp_path):
    out = tmp_path / "wide.csv"
    result = CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    records = RunStore.read(run).records()
    assert len(df) == len(records) == 10
    assert [c for c in df.columns if c.startswith("p_")] == ["p_E", "p_NE", "p_N", "p_NW", "p_W", "p_SW", "p_S", "p_SE"]
    by_key = {(r.sample_id, r.source): r for r in records}
    for row in df.itertuples():
        rec = by_key[(row.sample_id, row.source)]
        assert row.dae == pytest.approx(rec.dae) and row.p_W == pytest.approx(rec.compass[4])
    assert {"ref_x0", "tgt_name", "d_ab", "r_max"} <= set(df.columns)


def test_long_csv_on_stdout_has_a_row_per_sector(run):
    result = CliRunner().invoke(cli, ["export", str(run), "--form", "long", "--out", "-"])
    assert result.exit_code == 0, result.output
    from io import StringIO

    df = pd.read_csv(StringIO(result.stdout))
    assert len(df) == 10 * 8 and list(df.columns[:6]) == ["sample_id", "source", "sector", "direction", "angle", "p"]
    assert "relation" in df.columns
    sums = df.groupby(["sample_id", "source"])["p"].sum()
    assert sums.to_numpy() == pytest.approx(1.0)


def test_parquet_round_trip(run, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "parquet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert len(df) == 10 and df["p_E"].dtype == "float64"
    bad = CliRunner().invoke(cli, ["export", str(run), "--format", "parquet", "--out", "-"])
    assert bad.exit_code == 2 and "stdout takes CSV only" in bad.output


def test_parquet_without_pyarrow_says_what_to_install(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "parquet", "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "pip install pyarrow" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.parquet").exists()


def test_mixed_object_columns_become_one_type():
    from creg.report.export import _one_type

    def as_list(series):
        return [None if pd.isna(v) else v for v in series]

    assert as_list(_one_type(pd.Series([[1, 2], {"a": 1}, None], dtype=object))) == ["[1, 2]", '{"a": 1}', None]
    assert as_list(_one_type(pd.Series([1, 2.5], dtype=object))) == [1.0, 2.5]
    assert as_list(_one_type(pd.Series([1, "x", None], dtype=object))) == ["1", "x", None]


def test_export_of_a_non_run_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output and "Traceback" not in result.output
