"""Reading benchmark data safely: paths that stay inside the data folder, images of any mode,
COCO annotation files checked entry by entry, and file names made safe.

Shared by the benchmark plugins (no plugin imports another plugin) and by the run store.
"""
