"""Import paths of creg before its layered rooms, kept importable for one release: ``import creg.adapter`` still
gives :mod:`creg.plugins.adapter`'s names, with a :class:`DeprecationWarning` naming the new path.

A moved name is looked up in the new modules listed for its old module, in order (a module whose names went
to several rooms lists each). ``creg.metrics`` (now the built-in metric plugins; the equations are
:mod:`creg.core.measures`) and ``creg.plugins`` (now a package; the manager is :mod:`creg.plugins.manager`)
name rooms of their own and are not aliased. docs/changelog.md has the table for readers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: old module -> the modules its names live in now (first match wins).
MOVED: dict[str, tuple[str, ...]] = {
    "creg.adapter": ('creg.plugins.adapter',),
    "creg.analyses": ('creg.explain.model_parts',),
    "creg.analyses.auto_layers": ('creg.execution.auto_layers',),
    "creg.analyses.layers": ('creg.explain.layers',),
    "creg.analyses.randomize": ('creg.experiments.randomize',),
    "creg.analyses.spearman": ('creg.core.spearman',),
    "creg.batching": ('creg.execution.batching',),
    "creg.benchmark": ('creg.plugins.benchmark',),
    "creg.box_formats": ('creg.core.box_formats',),
    "creg.capabilities": ('creg.plugins.capabilities', 'creg.plugins.compatibility'),
    "creg.compass": ('creg.core.compass',),
    "creg.context": ('creg.explain.context',),
    "creg.controls": ('creg.execution.blank_control', 'creg.core.blank', 'creg.summary.prior'),
    "creg.controls.blank": ('creg.execution.blank_control', 'creg.core.blank', 'creg.summary.prior'),
    "creg.controls.chi2": ('creg.summary.chi2',),
    "creg.controls.prior": ('creg.summary.prior',),
    "creg.data": ('creg.coco',),
    "creg.data.coco": ('creg.coco.annotations',),
    "creg.data.images": ('creg.core.images',),
    "creg.data.paths": ('creg.core.paths',),
    "creg.distributed": ('creg.execution.backends',),
    "creg.distributed.run": ('creg.execution.backends.torchrun',),
    "creg.distributed.world": ('creg.execution.backends.world',),
    "creg.export": ('creg.report.export',),
    "creg.frames": ('creg.report.frames',),
    "creg.ground_truth": ('creg.core.ground_truth',),
    "creg.hookspecs": ('creg.plugins.hookspecs',),
    "creg.hub": ('creg.config.hub',),
    "creg.logs": ('creg.core.logs',),
    "creg.occlusion": ('creg.explain.occlusion',),
    "creg.options": ('creg.plugins.options',),
    "creg.placement": ('creg.config.placement',),
    "creg.prompts": ('creg.core.prompts',),
    "creg.published": ('creg.report.published',),
    "creg.records": ('creg.core.records',),
    "creg.registry": ('creg.config.presets',),
    "creg.relation_check": ('creg.core.relation_check',),
    "creg.relevance": ('creg.plugins.relevance',),
    "creg.reporting": ('creg.report',),
    "creg.reporting.analysis": ('creg.experiments.variants', 'creg.summary.breakdowns', 'creg.summary.paired_tests'),
    "creg.reporting.compare": ('creg.report.compare',),
    "creg.reporting.cross_run": ('creg.report.cross_run',),
    "creg.reporting.diagnostics": ('creg.summary.diagnostics',),
    "creg.reporting.examples": ('creg.report.examples', 'creg.summary.examples', 'creg.experiments.heatmaps'),
    "creg.reporting.figures": ('creg.report.figures', 'creg.core.compass'),
    "creg.reporting.gallery": ('creg.report.gallery',),
    "creg.reporting.html": ('creg.report.html',),
    "creg.reporting.multigrid": ('creg.report.multigrid', 'creg.explain.grids'),
    "creg.reporting.report": ('creg.report.report',),
    "creg.reporting.reproduction": ('creg.report.reproduction',),
    "creg.reporting.summary": ('creg.summary.aggregate', 'creg.summary.groups'),
    "creg.reporting.versus_random": ('creg.summary.versus_random',),
    "creg.reporting.warnings": ('creg.summary.warnings',),
    "creg.reproduce": ('creg.experiments.reproduce',),
    "creg.run_config": ('creg.config.run_config', 'creg.config.resolve', 'creg.core.errors', 'creg.execution.threads'),
    "creg.run_file": ('creg.config.file',),
    "creg.runner": ('creg.execution.runner', 'creg.execution.signals'),
    "creg.safe_text": ('creg.core.safe_text',),
    "creg.sample": ('creg.core.sample',),
    "creg.scoring": ('creg.explain',),
    "creg.scoring.builtin_metrics": ('creg.metrics.builtin',),
    "creg.scoring.pipeline": ('creg.explain.pipeline',),
    "creg.scoring.registry": ('creg.plugins.metric',),
    "creg.testing.tiny_configs": ('creg.hf.tiny_configs',),
    "creg.testing.tiny_tokenizers": ('creg.hf.tiny_tokenizers',),
}

#: old modules that were packages (their old submodules import through them).
PACKAGES = frozenset(['creg.analyses', 'creg.controls', 'creg.data', 'creg.distributed', 'creg.reporting', 'creg.scoring'])


class _Moved(types.ModuleType):
    """An old module: its attributes are looked up in the new modules."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        for target in MOVED[self.__name__]:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(MOVED[self.__name__])}) has no attribute {name!r}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname in PACKAGES)

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {' / '.join(MOVED[spec.name])}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)
        module = _Moved(spec.name)
        if spec.name in PACKAGES:
            module.__path__ = []
        return module

    def exec_module(self, module):
        return None


def install() -> None:
    """Put the finder on :data:`sys.meta_path` once (``import creg`` does)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
