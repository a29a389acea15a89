"""``dexkit scenarios``: the ready setups ``dexkit init --scenario NAME`` starts from."""

from __future__ import annotations

from dexkit.cli.options import Format, OutputOption
from dexkit.console import Output


def scenarios(output: OutputOption = Format.text) -> None:
    """List the ready setups, one line each (start one with 'dexkit init --scenario NAME')."""
    # Deferred until the command runs: ~43 modules, ~23 ms of 'dexkit scenarios --help'.
    from dexkit.scenarios import list_scenarios  # noqa: PLC0415

    found = list_scenarios()
    out = Output()
    if output.structured:
        out.structured(output, [{"name": s.name, "summary": s.summary,
                                 "proof": s.expectations().proof, "readme": str(s.readme)}
                                for s in found])
        return
    width = max((len(s.name) for s in found), default=0)
    out.data("".join(f"{s.name:<{width}}  {s.summary}\n" for s in found))
    out.next_step("dexkit init --scenario NAME --dir DIR (each scenario's README.md says more)")
