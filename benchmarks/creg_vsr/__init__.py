"""VSR: the Visual Spatial Reasoning captions with boxes from COCO 2017 (paper §5.1, Appendix A.2).

Registers the ``vsr`` benchmark and the ``creg audit vsr`` command (the paper's Table 7).
"""

import creg


@creg.hookimpl
def register_benchmarks(register):
    register("vsr", "creg_vsr.benchmark:VsrBenchmark", needs_data=True,
             description="VSR true captions with a direction relation, boxes from COCO 2017 (needs --data-dir)")


@creg.hookimpl
def register_commands(cli):
    import click

    from .audit import audit_vsr_command

    group = cli.commands.get("audit")
    if group is None:
        group = click.Group("audit", help="Check how benchmark data matches what the paper reports.")
        cli.add_command(group)
    if isinstance(group, click.Group):
        group.add_command(audit_vsr_command, "vsr")
    else:  # another plugin took the name "audit" for a plain command
        cli.add_command(audit_vsr_command, "audit-vsr")
