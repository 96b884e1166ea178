"""params.yaml schema validation: the shipped files are valid, bad ones fail naming the key."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from microai.config import ConfigError, load_params, section, validate_params

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(ROOT / "params.yaml")


@pytest.mark.parametrize("path", ["params.yaml", *sorted(p.relative_to(ROOT).as_posix()
                                                          for p in (ROOT / "config").glob("*.yaml"))])
def test_shipped_parameter_files_are_valid(path):
    load_params(ROOT / path)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p["sweep"].update(filtres=[8]), "'filtres' was unexpected"),
        (lambda p: p["sweep"].update(filters=["sixteen"]), "sweep.filters[0]"),
        (lambda p: p["train"]["synthetic-har"].update(epochs=0), "train.synthetic-har.epochs"),
        (lambda p: p["precisions"]["int16"].update(width=40), "precisions.int16.width"),
        (lambda p: p["sweep"].update(boards=["arduino"]), "sweep.boards[0]"),
        (lambda p: p["sweep"].update(precisions=["int4"]), "precisions.int4 is not defined"),
        (lambda p: p["train"].pop("synthetic-har"), "train.synthetic-har is not defined"),
        (lambda p: p["deploy"].update(opt="-O9"), "deploy.opt"),
        (lambda p: p["boards"]["nucleo-l452re-p"].update(prot="/dev/ttyACM0"),
         "boards.nucleo-l452re-p: Additional properties are not allowed ('prot' was unexpected)"),
        (lambda p: p["boards"].update({"nucleo": {}}), "'nucleo' was unexpected"),
        (lambda p: p["models"].update(resnet={"blocs": 3}), "models.resnet: Additional properties"),
        (lambda p: p["models"]["resnetv1-6"].update(filters=8), "models.resnetv1-6"),
        (lambda p: p["datasets"]["synthetic-har"].update(n_tarin=5), "'n_tarin' was unexpected"),
        (lambda p: p["datasets"].update(gtsrb={"check_size": False}), "datasets.gtsrb: Additional"),
        (lambda p: p["datasets"].update(gtsrb={"files": {"train": {}}}), "datasets.gtsrb.files"),
        (lambda p: p["datasets"].update(fsdd={"sha256": "abc"}), "datasets.fsdd.sha256"),
        (lambda p: p["datasets"].update(cifar10={}), "'cifar10' was unexpected"),
    ],
)
def test_bad_parameters_name_the_key(params, mutate, expected):
    bad = copy.deepcopy(params)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate_params(bad)
    assert expected in str(err.value)


def test_schema_lists_exactly_the_options_the_library_accepts():
    """The schema's dataset, model and board keys are the ones the code reads (no drift either way)."""
    import inspect

    from microai.data.registry import DATASETS
    from microai.data.sources import SOURCE_KEYS
    from microai.deploy.boards import BOARDS
    from microai.models import _OPTIONS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "params.schema.yaml").read_text())
    datasets = schema["properties"]["datasets"]["properties"]
    assert set(datasets) == set(DATASETS)
    for name, spec in DATASETS.items():
        keys = set(datasets[name].get("properties", {}))
        sources = set() if spec.synthetic else set(SOURCE_KEYS)
        assert set(spec.options) <= keys <= set(spec.options) | sources, name
        if not spec.synthetic:
            assert set(datasets[name]["properties"]["files"]["properties"]) == {f.key for f in spec.files}
    models = schema["properties"]["models"]["properties"]
    assert {name: set(m.get("properties", {})) for name, m in models.items()} == \
        {name: set(options) for name, options in _OPTIONS.items()}
    board_options = set(schema["$defs"]["serial_board"]["properties"])
    for name in schema["properties"]["boards"]["properties"]:
        assert BOARDS[name].physical and board_options <= set(inspect.signature(BOARDS[name]).parameters)


def test_unreadable_file_names_it(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("sweep: [unclosed")
    with pytest.raises(ConfigError, match="p.yaml"):
        load_params(f)


def test_section_names_missing_key(params):
    assert section(params, "train", "synthetic-har")["batch_size"] > 0
    with pytest.raises(ConfigError, match="train.nope"):
        section(params, "train", "nope")


def test_snakemake_rejects_bad_params_before_any_rule(tmp_path, params):
    bad = copy.deepcopy(params)
    bad["sweep"]["runs"] = "many"
    bad["boards"]["nucleo-l452re-p"]["prot"] = "/dev/ttyACM0"  # a typo of `port`
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(cfg), "--cores", "1"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "sweep.runs" in out and "boards.nucleo-l452re-p" in out and "'prot' was unexpected" in out
    assert "Job stats" not in out  # it failed before scheduling any rule


def test_slurm_profile_is_accepted(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
         "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train_float" in proc.stdout
