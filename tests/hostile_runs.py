"""For the hardening tests: a finished run directory whose every text field holds hostile text
(creg.testing.hostile_text: model, adapter (preset), benchmark and source names, category names, a
damaged line), and :func:`one_line`, the check that a refused command said one line and no more."""

from __future__ import annotations

import json
from pathlib import Path

from creg.execution.runner import Runner, RunConfig
from creg.testing.hostile_text import HOSTILE

#: a category name that matplotlib would parse as (broken) mathtext
MATHTEXT = r"cup $\undefinedcommand{$ mug"


def hostile_run(run: Path, *, n: int = 4) -> Path:
    """``run``: a synthetic run (oracle, random) rewritten so that its names are :data:`HOSTILE`."""
    Runner(RunConfig(sources=["oracle", "random"], n=n), run, progress=False, log=lambda _: None).run()
    cfg = json.loads((run / "config.json").read_text())
    cfg["run"]["adapter"] = HOSTILE[0]
    cfg["run"]["model"] = HOSTILE[1]
    cfg["run"]["prompt"] = HOSTILE[2] + " {ref} {tgt}"
    cfg["run"]["sources"] = ["oracle", HOSTILE[3]]
    cfg["run"]["bench"] = cfg["benchmark"]["name"] = HOSTILE[1]
    (run / "config.json").write_text(json.dumps(cfg))
    rows = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    for i, r in enumerate(rows):
        r["ref"]["name"] = HOSTILE[i % len(HOSTILE)]
        r["tgt"]["name"] = MATHTEXT
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    for r in recs:
        if r["source"] == "random":
            r["source"] = HOSTILE[3]
    lines = [json.dumps(r) for r in recs] + [json.dumps({"source": HOSTILE[4], "bad": HOSTILE[0]})]
    (run / "records.jsonl").write_text("".join(x + "\n" for x in lines))
    return run


def one_line(res, *, code: int = 2) -> str:
    """The one ``creg: ...`` line of a click result that exited ``code`` with no traceback."""
    assert res.exit_code == code, res.output
    assert not (res.exception and not isinstance(res.exception, SystemExit)), repr(res.exception)
    assert "Traceback" not in res.output
    lines = [x for x in res.output.splitlines() if x.startswith("creg:")]
    assert len(lines) == 1, res.output
    return lines[0]

