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
    ],
)
def test_bad_parameters_name_the_key(params, mutate, expected):
    bad = copy.deepcopy(params)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate_params(bad)
    assert expected in str(err.value)


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
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(cfg), "--cores", "1"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "sweep.runs" in proc.stdout + proc.stderr


def test_slurm_profile_is_accepted(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
         "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train_float" in proc.stdout
