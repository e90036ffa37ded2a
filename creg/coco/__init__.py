"""Reading benchmark data safely: COCO annotation files checked entry by entry.

Shared by the benchmark plugins (no plugin imports another plugin).
"""
