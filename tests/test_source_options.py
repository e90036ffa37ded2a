"""The first-party sources' Options models keep the 0.1 command-line names and semantics."""

from __future__ import annotations

import pytest

from creg.plugins.manager import get_plugins
from creg.sources.contrastive_multilayer import CregGtSource, CregSource
from creg.sources.gradient_norm import GradientNormSource
from creg.sources.gradxact import GradXActSource
from creg.sources.integrated_gradients import IntegratedGradientsSource
from creg.sources.random_reference import RandomReferenceSource


@pytest.mark.parametrize("value, layers", [([-2], (-2,)), (-3, (-3,)), ("-2,-3,-4,-5", (-2, -3, -4, -5)),
                                           ("[-2, -3]", (-2, -3)), ([-3, -3, -4], (-3, -4))])
def test_creg_layers_in_every_cli_form(value, layers):
    for cls in (CregSource, CregGtSource, RandomReferenceSource):
        assert cls(layers=value).layers == layers


def test_creg_defaults_are_the_papers():
    src = CregSource()
    assert (src.layers, src.contrastive, src.normalize, src.target) == ((-2, -3, -4, -5), True, "max", "pred_contrastive")
    assert CregGtSource(contrastive="false").target == "gt"
    assert CregSource(normalize="MinMax").normalize == "minmax"


def test_single_layer_sources_and_ig():
    assert GradXActSource(layer="[-3]", target="PRED").layer == -3
    assert GradientNormSource(layer="-4").layer == -4
    ig = IntegratedGradientsSource(steps="8", method="riemann_trapezoid", chunk=3)
    assert (ig.steps, ig.method, ig.layer, ig.chunk) == (8, "riemann_trapezoid", -2, 3)


@pytest.mark.parametrize("cls, options, field", [
    (CregSource, {"layers": "abc"}, "layers"),
    (CregSource, {"layers": ""}, "layers"),
    (CregSource, {"contrastive": "maybe"}, "contrastive"),
    (CregSource, {"normalize": "l2"}, "normalize"),
    (CregSource, {"bogus": 1}, "bogus"),
    (GradXActSource, {"layer": "-2,-3"}, "layer"),
    (GradXActSource, {"target": "gt_contrastive"}, "target"),
    (GradientNormSource, {"layer": "x"}, "layer"),
    (IntegratedGradientsSource, {"steps": 1}, "steps"),
    (IntegratedGradientsSource, {"method": "simpson"}, "method"),
    (IntegratedGradientsSource, {"chunk": 0}, "chunk"),
])
def test_bad_values_are_refused_naming_the_field(cls, options, field):
    with pytest.raises(ValueError, match=field):
        cls(**options)


def test_every_source_declares_documented_options():
    plugins = get_plugins()
    for name in plugins.names("source"):
        cls = plugins.load("source", name)
        assert cls.Options.model_config.get("extra") == "forbid", name
        for field, info in cls.Options.model_fields.items():
            assert info.description, f"{name}.{field} has no description"
