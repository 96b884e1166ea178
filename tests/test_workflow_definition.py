"""One definition of the pipeline: the stage table, the Snakefile made from it, the generated dvc.yaml."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_support import ROOT

from microai import dvc_yaml, snakemake_rules
from microai.config import ConfigError, load_params, validate_params
from microai.pipeline import FAMILIES, STAGES, sweep_results
from microai.tflite.tree import MARKER


def test_committed_dvc_yaml_is_the_generated_one():
    committed = (ROOT / "dvc.yaml").read_text()
    assert committed == dvc_yaml.dvc_yaml(), "dvc.yaml is out of date: run `make workflow-files`, commit it"


def test_every_stage_depends_on_its_script_stage_module_and_shared_plumbing():
    stages = yaml.safe_load(dvc_yaml.dvc_yaml())["stages"]
    for stage in STAGES:
        deps = stages[stage.name]["deps"]
        for path in stage.code_paths():
            assert (ROOT / path).exists(), f"{stage.name}: code dependency {path} does not exist"
            assert path in deps
        if stage.module:
            assert {f"workflow/scripts/{stage.script}", "microai/cli.py", "microai/config.py"} <= set(deps)


def imported_files(path: Path, seen: set[Path]) -> set[Path]:
    """Repository source files ``path`` imports, transitively (imports inside functions included).
    microai/stages/__init__.py only re-exports the stage modules: it is followed no further."""
    if path in seen:
        return seen
    seen.add(path)
    if path == ROOT / "microai" / "stages" / "__init__.py":
        return seen
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] not in ("microai", "codegen"):
                continue
            for i in range(1, len(parts) + 1):  # a module's packages run their __init__ first
                module = ROOT.joinpath(*parts[:i])
                for candidate in (module / "__init__.py", module.with_suffix(".py")):
                    if candidate.is_file():
                        imported_files(candidate, seen)
    return seen


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_the_declared_code_of_a_stage_covers_everything_it_imports(stage):
    """A stage's code list is written by hand; this follows its imports so that nothing is missed."""
    if stage.module:  # the script, and its stage function (the package's __init__ only re-exports it)
        starts = [ROOT / "workflow" / "scripts" / stage.script,
                  ROOT / "microai" / "stages" / f"{stage.module}.py"]
    else:  # python -m <package>
        starts = [ROOT / stage.script.split()[-1] / "__main__.py"]
    declared = [ROOT / p for p in stage.code_paths()]
    seen: set[Path] = set()
    for start in starts:
        imported_files(start, seen)
    for path in sorted(seen):
        assert any(path == d or d in path.parents for d in declared), \
            f"{stage.name} imports {path.relative_to(ROOT)}, not among its code in microai/pipeline.py"


def test_snakemake_and_dvc_run_the_same_stages():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--list-rules"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()} - {"all"}
    assert rules == set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def test_sweep_results_name_exactly_the_current_sweep(monkeypatch, tmp_path):
    monkeypatch.delenv("MICROAI_TFLM_TREE", raising=False)  # no TFLite Micro tree: host rows only
    params = load_params(ROOT / "params.yaml")
    params["sweep"].update(runs=[0], boards=["qemu-m4"], precisions=["int8"], frameworks=["microai"])
    files = {f.as_posix() for f in sweep_results(params, "r")}
    run = "r/synthetic-har/resnetv1-6-f16/run0"
    assert files == {f"{run}/int8.eval.json", f"{run}/int8.check.json", f"{run}/int8.qemu-m4.json"}
    params["sweep"]["frameworks"] = ["microai", "tflite-micro"]
    files_with_tflm = {f.as_posix() for f in sweep_results(params, "r")}
    assert files_with_tflm - files == {f"{run}/tflite-micro/{p}.eval.json" for p in ("float32", "int8")}
    (tmp_path / MARKER).parent.mkdir(parents=True)  # a TFLite Micro tree (as far as planning can tell)
    (tmp_path / MARKER).touch()
    monkeypatch.setenv("MICROAI_TFLM_TREE", str(tmp_path))
    files_on_boards = {f.as_posix() for f in sweep_results(params, "r")}
    on_board = {f"{run}/tflite-micro/{p}.qemu-m4.json" for p in ("float32", "int8")}
    assert files_on_boards - files_with_tflm == on_board


def test_deploy_runs_must_be_swept():
    params = load_params(ROOT / "params.yaml")
    params["deploy"]["runs"] = [7]
    with pytest.raises(ConfigError, match="deploy.runs"):
        validate_params(params)


def test_resources_name_only_stages_of_the_table(tmp_path):
    params = load_params(ROOT / "params.yaml")
    params["resources"]["stages"]["train"] = {"threads": 2}
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(params))
    proc = dry_run(tmp_path, "--configfile", str(tmp_path / "typo.yaml"))
    assert proc.returncode != 0
    assert "resources.stages names unknown stage(s) ['train']" in proc.stdout + proc.stderr


SHARED = ROOT.parent / "shared"  # laid beside the clone, as in CI


def dry_run(workdir, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(ROOT / "Snakefile"),
           "-d", str(workdir)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True)


def test_dry_run_names_every_dataset_it_cannot_obtain(tmp_path):
    params = load_params(ROOT / "config" / "paper.yaml")
    params["sweep"].update(datasets=["uci-har", "smnist", "fsdd"], filters=[16], runs=[0])
    params["datasets"].update({
        "uci-har": {"url": "http://127.0.0.1:9/uci-har.zip"},  # the discard port: nothing listens
        "smnist": {"local_dir": str(tmp_path / "no-such-folder")},
        "fsdd": {"path": str(SHARED / "datasets" / "fsdd" / "free-spoken-digit-dataset_26eb9aa.zip")},
    })
    config = tmp_path / "offline.yaml"
    config.write_text(yaml.safe_dump(params))
    proc = dry_run(tmp_path, "--configfile", str(config))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cannot obtain these datasets" in out
    assert "uci-har: " in out and "127.0.0.1 is unreachable" in out and "datasets.uci-har.path" in out
    assert "smnist: " in out and "no-such-folder/data_sp_train.npy does not exist" in out
    assert "fsdd: " not in out  # the local copy exists


def test_paper_sweep_starts_or_names_the_datasets_it_cannot_obtain(tmp_path):
    """With network access the paper's sweep plans its 2,906 jobs; without, the dry run says which
    datasets it cannot get (and nothing else)."""
    proc = dry_run(tmp_path, "--configfile", str(ROOT / "config" / "paper.yaml"))
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        assert re.search(r"^total\s+2906$", out, re.M), out[-2000:]
    else:
        named = re.findall(r"^  (\S+): .*(?:unreachable|does not exist)", out, re.M)
        assert named and set(named) <= {"uci-har", "smnist", "gtsrb"}, out[-3000:]
        assert "Traceback" not in out


def test_another_working_directory_defaults_to_the_repositorys_params(tmp_path):
    proc = dry_run(tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert "train_float" in proc.stdout


def test_effective_parameters_are_written_once_per_configuration(tmp_path):
    """A dry run with other parameters adds a file; it never rewrites the one running jobs read."""
    assert dry_run(tmp_path).returncode == 0
    folder = tmp_path / ".snakemake" / "microai"
    (first,) = folder.glob("params-*.json")
    before = first.stat().st_mtime_ns, first.read_text()
    other = load_params(ROOT / "params.yaml")
    other["deploy"]["vectors"] = 7
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    assert dry_run(tmp_path, "--configfile", str(tmp_path / "other.yaml")).returncode == 0
    assert dry_run(tmp_path).returncode == 0
    assert (first.stat().st_mtime_ns, first.read_text()) == before
    files = sorted(folder.glob("params-*.json"))
    assert len(files) == 2 and not list(folder.glob("*.tmp"))
    assert {json.loads(f.read_text())["deploy"]["vectors"] for f in files} == {20, 7}


def test_committed_rules_files_are_the_generated_ones():
    folder = ROOT / "workflow" / "rules"
    generated = snakemake_rules.family_files()
    committed = {p.name for p in folder.glob("*.smk")} - {"common.smk"}
    assert committed == set(generated), "rules files differ: run `make workflow-files` and commit them"
    for name, text in generated.items():
        assert (folder / name).read_text() == text, f"{name} is out of date: run `make workflow-files`"
    snakefile = (ROOT / "Snakefile").read_text()
    includes = re.findall(r'^include: "workflow/rules/(\d+_\w+\.smk)"', snakefile, re.M)
    assert includes == list(generated), "the Snakefile includes every family's rules, in order"


def test_every_stage_is_in_exactly_one_family():
    names = [n for _, family in FAMILIES.values() for n in family]
    assert sorted(names) == sorted(s.name for s in STAGES)
    assert len(names) == len(set(names))
