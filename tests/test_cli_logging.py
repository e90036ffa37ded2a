"""-v/-q through the ``creg`` logger: log messages on stderr (hidden by -q), results on stdout."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from creg.core import logs
from creg.cli import cli


@pytest.fixture()
def runner():
    yield CliRunner()
    logs.configure(0)


def _run(runner, out, *extra, group=()):
    return runner.invoke(cli, [*group, "run", "--adapter", "none", "--source", "oracle", "--n", "2", "--out", str(out),
                               "--no-progress", *extra])


def test_log_messages_go_to_stderr_and_the_table_to_stdout(runner, tmp_path):
    out = tmp_path / "run"
    assert _run(runner, out).exit_code == 0
    again = _run(runner, out)  # a resume logs "resuming ..."
    assert again.exit_code == 0
    assert "resuming" in again.stderr and "resuming" not in again.stdout
    assert "| oracle |" in again.stdout and "| oracle |" not in again.stderr


@pytest.mark.parametrize("where", ["command", "group"])
def test_quiet_hides_info_but_not_the_results(runner, tmp_path, where):
    out = tmp_path / "run"
    _run(runner, out)
    quiet = _run(runner, out, "-q") if where == "command" else _run(runner, out, group=["-q"])
    assert quiet.exit_code == 0, quiet.output
    assert "resuming" not in quiet.stderr and "| oracle |" in quiet.stdout
    assert logs.quiet()


def test_quiet_keeps_warnings_and_errors(runner, tmp_path):
    logs.configure(-1)
    from creg.cli.common import log

    result = runner.invoke(cli, ["-q", "report", str(tmp_path / "absent")])
    assert result.exit_code == 2 and "no such run directory" in result.stderr  # errors are never hidden
    with runner.isolation() as (_, err, *_rest):
        log("creg: warning: plugin name clash: x")
        log("resuming something")
    text = err.getvalue().decode()
    assert "warning: plugin name clash" in text and "resuming" not in text


def test_verbosity_levels():
    assert logs.level_for(-2) == logging.ERROR and logs.level_for(-1) == logging.WARNING
    assert logs.level_for(0) == logging.INFO and logs.level_for(2) == logging.DEBUG
    logs.configure(1)
    assert logs.LOGGER.isEnabledFor(logging.DEBUG) and not logs.quiet()
    logs.configure(0)


def test_library_messages_reach_a_users_logging_setup(tmp_path, caplog):
    """A library user's logging configuration receives creg's progress messages (no print)."""
    from creg.execution.runner import Runner, RunConfig

    out = tmp_path / "run"
    Runner(RunConfig(sources=["oracle"], n=2), out, progress=False).run()
    with caplog.at_level(logging.INFO, logger="creg"):
        Runner(RunConfig(sources=["oracle"], n=2), out, progress=False).run()
    assert any("resuming" in r.getMessage() and r.name == "creg" for r in caplog.records)
