"""The tiny end-to-end configuration through workflow/profiles/slurm on a real single-node SLURM
cluster started on localhost (slow: a few minutes). Heavy stages must go through sbatch, the local
ones must run here, and the table must equal the local run's cell by cell."""

import re

import pandas as pd
import pytest
from pipeline_support import ROOT, failure_report, snakemake, tiny_params, write_params
from slurm_cluster import LocalCluster, missing_tools

from microai.pipeline import STAGES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_tools()), reason=f"slurm-wlm / munge not installed: {missing_tools()}"),
]


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    with LocalCluster() as cluster:
        workdir = tmp_path_factory.mktemp("slurm-pipeline")
        write_params(workdir / "params.yaml", tiny_params())
        proc = snakemake(workdir, "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"),
                         # poll often: the tiny jobs take seconds (the profile waits 40 s for real clusters)
                         "--slurm-init-seconds-before-status-checks", "2",
                         "--seconds-between-status-checks", "2",
                         "--latency-wait", "5", env=cluster.env)
        if proc.returncode != 0:
            pytest.fail(failure_report(proc, workdir))
        yield workdir, proc.stdout + proc.stderr, cluster.jobs()


def test_heavy_stages_went_through_sbatch_and_short_ones_ran_here(slurm_run):
    workdir, log, jobs = slurm_run
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    assert submitted, "no job was submitted"
    assert {j["id"] for j in jobs} == set(submitted.values())
    assert all(j["state"] == "COMPLETED" for j in jobs), jobs
    remote = {s.name for s in STAGES if not s.local}
    local = {s.name for s in STAGES if s.local}
    ran_remote = {m for m in re.findall(r"^rule (\w+):", log, re.M)}
    ran_local = {m for m in re.findall(r"^localrule (\w+):", log, re.M)} - {"all"}
    assert ran_remote == remote and ran_local == local
    assert {"download", "flash", "measure", "aggregate"} <= ran_local
    assert {"train_float", "quantize"} <= ran_remote
    # the controller's own record: the plugin comments each job with its rule's name
    assert {re.match(r"rule_([a-z_]+?)(?:_wildcards_|$)", j["comment"])[1] for j in jobs} == remote
    print(f"SLURM jobs: {len(jobs)} ({', '.join(sorted(ran_remote))});"
          f" local rules: {', '.join(sorted(ran_local))}")


def test_table_equals_the_local_run_cell_by_cell(slurm_run, tiny_run):
    workdir, _, _ = slurm_run
    cluster_table = pd.read_csv(workdir / "results" / "tables.csv")
    local_table = pd.read_csv(tiny_run / "results" / "tables.csv")
    pd.testing.assert_frame_equal(cluster_table, local_table, check_exact=True)
