"""A single-node SLURM cluster on localhost for tests: munged, slurmctld and slurmd (Debian's slurm-wlm
and munge), configured in a scratch folder for this host's name and CPU count.

Nothing outside the folder is touched: the clients find the cluster through ``SLURM_CONF``, and the
daemons started here are stopped by their PIDs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "srun", "scontrol", "scancel")


def missing_tools() -> list[str]:
    return [tool for tool in (*DAEMONS, *CLIENTS) if shutil.which(tool) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 // 2  # half the machine for the cluster's jobs
    raise RuntimeError("no MemTotal in /proc/meminfo")


class LocalCluster:
    """``with LocalCluster() as cluster:`` -- ``cluster.env`` is the environment for its clients.

    Its folder is a fresh one under the system's temporary folder (munged wants every folder above
    its socket searchable by all, which pytest's temporary folders are not), removed at the end."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="microai-slurm-"))
        self.conf = self.folder / "slurm.conf"
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        # The SLURM jobstep plugin strips SLURM_* variables, SLURM_CONF included, before the srun
        # inside each job; a cluster configured elsewhere than /etc/slurm then fails in srun. A
        # wrapper ahead on PATH gives srun the configuration back.
        wrapper_dir = self.folder / "bin"
        self.env["PATH"] = f"{wrapper_dir}:{os.environ['PATH']}"
        self._srun_wrapper = wrapper_dir / "srun"

    def write_config(self) -> None:
        f = self.folder
        # munged wants the folder of its socket searchable by all and the key readable by it only.
        f.chmod(0o755)
        for sub in ("state", "spool", "bin"):
            (f / sub).mkdir(exist_ok=True)
        key = f / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        srun = shutil.which("srun")
        self._srun_wrapper.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {srun} "$@"\n')
        self._srun_wrapper.chmod(0o755)
        host = socket.gethostname()
        self.conf.write_text("\n".join([
            "ClusterName=microai-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root" if os.getuid() == 0 else f"SlurmUser={os.environ.get('USER', 'nobody')}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={f / 'munge.socket'}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",  # no accounting: sacct cannot tell job states
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=300",  # squeue keeps finished jobs this long: the profile's status command
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={_memory_mb()}",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def _start(self, name: str, *args: str) -> None:
        with open(self.folder / f"{name}.out", "w") as log:  # the daemon keeps its own copy of the handle
            self.processes[name] = subprocess.Popen([shutil.which(name), *args], stdout=log, env=self.env,
                                                    stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, timeout: float = 30) -> None:
        self.write_config()
        f = self.folder
        self._start("munged", "-F", f"--key-file={f / 'munge.key'}", f"--socket={f / 'munge.socket'}",
                    f"--pid-file={f / 'munged.pid'}", f"--log-file={f / 'munged.log'}",
                    f"--seed-file={f / 'munge.seed'}")
        self._wait(lambda: (f / "munge.socket").exists(), timeout, "munged")
        self._start("slurmctld", "-D", "-f", str(self.conf))
        self._start("slurmd", "-D", "-f", str(self.conf))
        self._wait(self._node_idle, timeout, "slurmd registering with slurmctld")

    def _node_idle(self) -> bool:
        proc = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True,
                              env=self.env)
        return proc.returncode == 0 and proc.stdout.strip() == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}"
                                 for p in sorted(self.folder.glob("*.out")))
                raise RuntimeError(f"local SLURM cluster: waiting for {what} failed (exited: {dead})\n{logs}")
            time.sleep(0.3)

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller remembers (squeue keeps finished ones for MinJobAge)."""
        proc = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%k"],
                              capture_output=True, text=True, env=self.env, check=True)
        return [dict(zip(("id", "name", "state", "comment"), line.split("|", 3), strict=True))
                for line in proc.stdout.splitlines() if line.strip()]

    def stop(self) -> None:
        """Cancel the cluster's jobs, then stop the daemons started here, by PID, newest first."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            active = [j["id"] for j in self.jobs() if j["state"] in ("PENDING", "RUNNING", "COMPLETING")]
            if active:
                subprocess.run(["scancel", "--full", *active], capture_output=True, env=self.env, timeout=30)
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
