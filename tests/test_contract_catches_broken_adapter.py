"""The adapter contract must fail adapters with the bugs it exists to catch.

Each broken adapter below is the real Qwen2-VL adapter with one classic mistake. The contract
class is run against it in a nested pytest session (as a third party's suite would run it), and
the tests that guard against that mistake must fail while unrelated ones still pass.
"""

from __future__ import annotations

import textwrap

import pytest
from creg.adapter import AdapterConfig, ForwardOutput, ForwardRequest, VisionLayout
from creg.compass import uniform_cell_xy
from creg_qwen2vl.adapter import Qwen2VLAdapter


def _with_layouts(output: ForwardOutput, samples, fix) -> ForwardOutput:
    """``output`` with each sample's layout replaced by ``fix(layout, sample)``."""
    output.vision = [fix(lay, s) for lay, s in zip(output.vision, samples)]
    return output


class TransposedGridAdapter(Qwen2VLAdapter):
    """Reads the merged grid as (W_g, H_g): a square image hides it, a non-square one does not."""

    def forward(self, samples, request=ForwardRequest(), **kw):
        def fix(lay: VisionLayout, sample) -> VisionLayout:
            gw, gh = lay.grid_hw
            return lay.model_copy(update={"grid_hw": (gh, gw), "cell_xy": uniform_cell_xy((gh, gw), sample.image_size)})

        return _with_layouts(super().forward(samples, request, **kw), samples, fix)


class MirroredRowsAdapter(Qwen2VLAdapter):
    """Lists each row of vision tokens right to left (cell_xy still left to right)."""

    def forward(self, samples, request=ForwardRequest(), **kw):
        def fix(lay: VisionLayout, sample) -> VisionLayout:
            return lay.model_copy(update={"token_index": lay.token_index.reshape(lay.grid_hw).flip(1).reshape(-1)})

        return _with_layouts(super().forward(samples, request, **kw), samples, fix)


class StaleReplayAdapter(Qwen2VLAdapter):
    """``logits_from_layer`` returns the stored logits instead of running the decoder."""

    def logits_from_layer(self, output, layer, hidden):
        r = hidden.shape[0] // output.class_logits.shape[0]
        return output.class_logits.detach().repeat(r, 1)


CONTRACT_FILE = textwrap.dedent(
    """
    import pytest
    from creg.testing import AdapterContract

    class TestUnderContract(AdapterContract):
        @pytest.fixture(scope="class")
        @classmethod
        def adapter(cls, adapter_under_test):
            return adapter_under_test
    """
)


class _Runner:
    """A pytest plugin: provides ``adapter_under_test`` and records each test's outcome."""

    def __init__(self, adapter):
        self._adapter = adapter
        self.outcomes: dict[str, str] = {}
        self.messages: dict[str, str] = {}

    @pytest.fixture(scope="session")
    def adapter_under_test(self):
        return self._adapter

    def pytest_runtest_logreport(self, report):
        name = report.nodeid.split("::")[-1]
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[name] = report.outcome
            self.messages[name] = str(report.longrepr or "")


def run_tests(source: str, adapter, tmp_path, selection: str) -> _Runner:
    """Run the tests of ``source`` matching ``selection`` (-k) in a nested pytest session."""
    path = tmp_path / f"test_contract_{tmp_path.name}.py"  # unique: earlier runs stay in sys.modules
    path.write_text(source)
    runner = _Runner(adapter)
    pytest.main(
        [str(path), "-q", "-k", selection, "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "--import-mode=importlib"],
        plugins=[runner],
    )
    assert runner.outcomes, "no contract test ran"
    return runner


def run_contract(adapter, tmp_path, selection: str) -> dict[str, str]:
    """Run the contract tests matching ``selection`` on ``adapter``; test name -> outcome."""
    return run_tests(CONTRACT_FILE, adapter, tmp_path, selection).outcomes


@pytest.fixture(scope="module")
def tiny_adapter(tiny_qwen2vl_dir):
    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir)))


def _as(cls, adapter: Qwen2VLAdapter) -> Qwen2VLAdapter:
    """The same loaded model behind a (broken) adapter class."""
    return cls(adapter.config, adapter.model, adapter.inputs, adapter.option_token_ids)


GEOMETRY = "marker or shapes or batch"
REPLAY = "logits_from_layer"



def test_transposed_grid_fails_on_non_square_images(tiny_adapter, tmp_path):
    outcomes = run_contract(_as(TransposedGridAdapter, tiny_adapter), tmp_path, GEOMETRY)
    non_square = {n: o for n, o in outcomes.items() if n.startswith("test_marker_lands_in_its_cell") and "[1-" in n}
    square = {n: o for n, o in outcomes.items() if n.startswith("test_marker_lands_in_its_cell") and "[0-" in n}
    assert non_square and set(non_square.values()) == {"failed"}, outcomes
    assert square and set(square.values()) == {"passed"}, outcomes


def test_mirrored_token_order_fails_the_marker_test(tiny_adapter, tmp_path):
    outcomes = run_contract(_as(MirroredRowsAdapter, tiny_adapter), tmp_path, GEOMETRY)
    marker = {n: o for n, o in outcomes.items() if n.startswith("test_marker_lands_in_its_cell")}
    assert len(marker) == 4 and set(marker.values()) == {"failed"}, outcomes
    assert outcomes["test_output_shapes_and_dtypes"] == "passed"


def test_stale_replay_fails_the_replay_tests(tiny_adapter, tmp_path):
    outcomes = run_contract(_as(StaleReplayAdapter, tiny_adapter), tmp_path, REPLAY)
    assert outcomes == {
        "test_logits_from_layer_reproduces_class_logits": "failed",
        "test_logits_from_layer_is_differentiable": "failed",
    }


def test_missing_adapter_fixture_says_what_to_provide(tmp_path):
    source = "from creg.testing import AdapterContract\n\nclass TestNoFixture(AdapterContract):\n    pass\n"
    runner = run_tests(source, None, tmp_path, "shapes")
    assert runner.outcomes == {"test_output_shapes_and_dtypes": "failed"}
    assert "NotImplementedError" in runner.messages["test_output_shapes_and_dtypes"]
    assert "must provide an `adapter` fixture" in runner.messages["test_output_shapes_and_dtypes"]
