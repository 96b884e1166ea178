"""dvc.yaml from the stage table (microai.pipeline): the same stages as the Snakefile, for ``dvc repro``.

Every stage becomes a matrix stage over the params.yaml lists of its dimensions, with its inputs,
parameters and code as dependencies. Write it with ``make workflow-files`` (``python -m microai.dvc_yaml
> dvc.yaml``); a test fails when the committed file differs from what this module writes.
"""

from __future__ import annotations

import re
import sys

import yaml

from microai.pipeline import DIMENSIONS, STAGES, Stage, fill_dimensions

HEADER = """\
# Generated from the stage table (microai/pipeline.py) by `make workflow-files`: edit the table, not here.
# The same stages as the Snakefile, as matrix stages over params.yaml's sweep; `dvc repro` runs them.
"""

#: dvc plots: name -> (data file in results/plots, template in .dvc/plots, x, y, title).
PLOTS = {
    "accuracy-vs-filters": ("accuracy_vs_filters", "series", "filters", "accuracy_mean",
                            "Test accuracy (%) against filters, per precision (paper Figures 5/7/9)"),
    "accuracy-vs-param-memory": ("accuracy_vs_param_kib", "series", "param_kib", "accuracy_mean",
                                 "Test accuracy (%) against parameter memory in KiB (paper Figures 6/8/10)"),
    "rom-at-max-filters": ("deployment_at_max_filters", "bars", "rom_kib", "series",
                           "ROM (KiB) at the largest filter count (paper Figure 11)"),
    "time-at-max-filters": ("deployment_at_max_filters", "bars", "est_ms", "series",
                            "Estimated ms per inference @48 MHz, largest filter count (paper Figure 12)"),
    "energy-at-max-filters": ("deployment_at_max_filters", "bars", "est_energy_uwh", "series",
                              "Estimated energy (uWh) per inference, largest filter count (paper Figure 13)"),
    "rom-vs-filters": ("deployment_vs_filters", "series", "filters", "rom_kib",
                       "ROM (KiB) against filters (Table A3)"),
    "time-vs-filters": ("deployment_vs_filters", "series", "filters", "est_ms",
                        "Estimated ms per inference @48 MHz against filters (Table A4)"),
    "energy-vs-filters": ("deployment_vs_filters", "series", "filters", "est_energy_uwh",
                          "Estimated energy (uWh) per inference against filters (Table A5)"),
}


def _dvc(pattern: str) -> str:
    """``{dataset}`` -> ``${item.dataset}``."""
    return fill_dimensions(pattern, r"${item.\1}")


def _matrix(stage: Stage) -> dict[str, str | list[str]]:
    lists = {d: "deploy.runs" if d == "run" and stage.deploy_runs else DIMENSIONS[d] for d in stage.over}
    return {d: list(stage.values[d]) if d in stage.values else "${" + key + "}" for d, key in lists.items()}


def _command(stage: Stage) -> str:
    paths = {f"input.{k}": v for k, v in stage.inputs.items()}
    paths.update({f"output.{k}": o.path for k, o in stage.outputs.items()})
    args = re.sub(r"\{((?:input|output)\.\w+)\}", lambda m: paths[m[1]], stage.args)
    program = f"workflow/scripts/{stage.script}" if stage.script.endswith(".py") else stage.script
    return _dvc(f"python {program} {args}")


def _param(key: str) -> str:
    """An optional key (``boards.{board}?``) becomes its parent section, which params.yaml always has."""
    return _dvc(key.rsplit(".", 1)[0] if key.endswith("?") else key)


def stage_entry(stage: Stage) -> dict:
    entry: dict = {}
    if stage.over:
        entry["matrix"] = _matrix(stage)
    entry["cmd"] = _command(stage)
    entry["deps"] = [_dvc(p) for p in stage.inputs.values()] + stage.code_paths()
    if stage.params:
        entry["params"] = [_param(k) for k in stage.params]
    outs, metrics, plots = [], [], []
    for out in stage.outputs.values():
        path = _dvc(out.path)
        if out.path.endswith("metrics.json"):
            metrics.append({path: {"cache": False}})
        elif out.kind == "git":  # plot data: drawn by the top-level plots below
            outs.append({path: {"cache": False}})
        elif out.path.endswith(".png"):
            plots.append(path)
        else:
            outs.append(path)
    for name, items in (("outs", outs), ("metrics", metrics), ("plots", plots)):
        if items:
            entry[name] = items
    return entry


def dvc_yaml() -> str:
    plots = [{name: {"template": template, "x": x, "y": {f"results/plots/{data}.csv": y}, "title": title}}
             for name, (data, template, x, y, title) in PLOTS.items()]
    document = {"stages": {s.name: stage_entry(s) for s in STAGES}, "plots": plots}
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=110)


def main() -> None:
    sys.stdout.write(dvc_yaml())


if __name__ == "__main__":
    main()
