"""creg's first-party relevance sources, registered through the ``creg`` entry point like any plugin."""

import creg


@creg.hookimpl
def register_sources(register):
    register("oracle", "creg.sources.geometry:OracleSource")
    register("random", "creg.sources.geometry:RandomDirectionSource")
    register("random_relevance", "creg.sources.geometry:RandomRelevanceSource")
