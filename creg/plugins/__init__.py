"""The plugin contracts and their discovery: hook specifications, the plugin manager, option schemas, and the
bases a plugin subclasses (VLMAdapter, RelevanceSource, Benchmark, Metric) with their capabilities."""
