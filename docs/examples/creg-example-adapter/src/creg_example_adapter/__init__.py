"""An example creg plugin: registers the ``example-tiny`` adapter.

The adapter is given as a ``"module:attr"`` string, so ``creg list`` does not import torch.
"""

from creg import hookimpl


@hookimpl
def register_adapters(register):
    register("example-tiny", "creg_example_adapter.adapter:ExampleTinyAdapter")
