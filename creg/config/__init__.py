"""What a run is before it runs: its configuration, the defaults, presets (registry.toml), config files,
model placement, and the one resolver from names to plugins."""
