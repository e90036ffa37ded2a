"""creg: Compass Relational Evidence for vision-language models.

Turns a VLM's token attributions into a compass distribution around a reference object and
measures how well it points at the truth (the CREG paper, §3-§4).
"""

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
