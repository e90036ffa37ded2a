"""Everything that runs a model again beyond one run: ``creg reproduce``, flipped and variant runs, heatmap
redraws for reports, and the model-randomisation check."""
