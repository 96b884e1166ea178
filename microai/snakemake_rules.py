"""Snakemake rules from the stage table (microai.pipeline): one readable file per stage family.

``workflow/rules/<n>_<family>.smk`` spells out each stage's inputs, outputs, parameters and command,
so a reader sees the paper's stages in order; dvc.yaml is made from the same table
(:mod:`microai.dvc_yaml`). Write both with ``make workflow-files`` (``python -m microai.snakemake_rules
workflow/rules``); a test fails when a committed file differs from what this module writes. The
helpers the rules call (``stage_param``, ``stage_code``, ``job_resources`` ...) live in
``workflow/rules/common.smk``.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

from microai.pipeline import FAMILIES, STAGE_BY_NAME, SWEEP_RESULTS, Output, Stage, fill_dimensions

HEADER = """\
# Generated from the stage table (microai/pipeline.py) by `make workflow-files`: edit the table, not here.
"""


def rules_file_name(index: int, family: str) -> str:
    return f"{index}_{family}.smk"


def _param_name(key: str) -> str:
    return re.sub(r"\W+", "_", key).strip("_")


def _quote(text: str) -> str:
    return json.dumps(text)


def _output(out: Output) -> str:
    path = _quote(out.path)
    if out.kind == "dir":
        return f"directory({path})"
    if out.report:  # shown in `snakemake --report`, with its caption file
        category = "Tables" if out.path.endswith(".csv") else "Figures"
        sub = "" if category == "Tables" else \
            f', subcategory="{"Accuracy" if "accuracy" in out.report else "Deployment"}"'
        return (f"report(\n            {path},\n            caption=caption({_quote(out.report)}),"
                f' category="{category}"{sub},\n        )')
    return path


def _command(stage: Stage) -> list[str]:
    """The shell command as string pieces of one option each (Snakemake formats the whole)."""
    program = f"{{SCRIPTS}}/{stage.script}" if stage.module else stage.script
    args = fill_dimensions(stage.args, r"{wildcards.\1}")
    pieces = [f"{{PYTHON}} {program}" + (" --params {PARAMS_FILE}" if stage.params else "")]
    pieces += [" " + p.strip() for p in re.split(r"(?= --)", " " + args) if p.strip()]
    if stage.threaded:
        pieces.append(" --threads {threads}")
    pieces.append(" 2> {log}")
    return pieces


def rule_text(stage: Stage) -> str:
    name = _quote(stage.name)
    lines = [f"rule {stage.name}:", f'    """{stage.doc}"""', "    input:"]
    for key, pattern in stage.inputs.items():
        every_result = pattern == SWEEP_RESULTS  # exactly the current sweep's files
        value = "lambda wildcards: pipeline.sweep_results(config)" if every_result else _quote(pattern)
        lines.append(f"        {key}={value},")
    lines += [f"        code=stage_code({name}),", "    output:"]
    lines += [f"        {key}={_output(out)}," for key, out in stage.outputs.items()]
    if stage.params or stage.facts:
        lines.append("    params:")
        lines += [f"        {_param_name(key)}=stage_param({_quote(key)})," for key in stage.params]
        lines += [f"        {fact}=environment_fact({_quote(fact)})," for fact in stage.facts]
    if stage.threaded:
        lines.append(f"    threads: stage_threads(config, {name})")
    if stage.local:
        lines.append("    localrule: True")
    else:
        lines += ["    resources:", f"        **job_resources({name}),"]
    lines += ["    log:", f"        {_quote(stage.log())},", "    shell:"]
    lines += [f'        "{piece}"' for piece in _command(stage)]
    return "\n".join(lines) + "\n"


def family_files() -> dict[str, str]:
    """File name -> text of every family's rules file."""
    files = {}
    for index, (family, (what, names)) in enumerate(FAMILIES.items(), start=1):
        rules = "\n\n".join(rule_text(STAGE_BY_NAME[n]) for n in names)
        title = textwrap.fill(f"{index}. {family}: {what}.", 100, initial_indent="# ", subsequent_indent="# ")
        files[rules_file_name(index, family)] = f"{HEADER}{title}\n\n\n{rules}"
    return files


def main() -> None:
    folder = Path(sys.argv[1])
    for name, text in family_files().items():
        (folder / name).write_text(text)


if __name__ == "__main__":
    main()
