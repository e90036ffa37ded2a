"""The run store: the only code that reads or writes a run directory (see :mod:`creg.store.run_store`)."""

from creg.store.files import LinkRefused, open_no_follow
from creg.store.identity import describe_run, identity, resume_differences
from creg.store.layout import RunDirError, refuse_links, safe_name
from creg.store.maps import StoredMap
from creg.store.parts import PARTS, absorb_parts, part_path, part_paths
from creg.store.run_store import (
    RunStore,
    RunWriter,
    join,
    write_grid_artifact,
    write_grid_files,
)
from creg.store.schema import (
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    Failure,
    SampleFacts,
    SourceRow,
)

__all__ = ["RunStore", "RunWriter", "RunDirError", "SampleFacts", "SourceRow", "Failure", "SCHEMA_VERSION",
           "READABLE_VERSIONS", "describe_run", "identity", "resume_differences", "join", "safe_name",
           "write_grid_files", "write_grid_artifact", "read_run", "StoredMap", "PARTS", "absorb_parts", "part_path",
           "part_paths", "LinkRefused", "open_no_follow", "refuse_links"]


def read_run(path):
    """Open a run directory for reading (:meth:`RunStore.read`)."""
    return RunStore.read(path)
