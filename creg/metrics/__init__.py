"""The built-in metric plugins (registered through the ``creg`` entry-point group like any third party's)."""
