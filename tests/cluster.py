"""A throwaway one-node SLURM cluster for tests (the `slurm_cluster` fixture of conftest.py).

munged, slurmctld and slurmd run from a temporary folder with their own key, socket, ports, state, spool, pid and
log files, so that nothing of the machine's own configuration is read or changed (see shared/SLURM.md for what was
measured on these machines). Every SLURM command finds the cluster through the SLURM_CONF environment variable.

    python tests/cluster.py       # start one by hand, print how to use it, stop it at Enter (root only)
"""
from __future__ import annotations
import contextlib, os, pwd, re, shutil, socket, subprocess, tempfile, time
from pathlib import Path

PACKAGES = 'slurm-wlm munge'
DAEMONS = ('munged', 'slurmctld', 'slurmd')
COMMANDS = ('sbatch', 'srun', 'squeue', 'sinfo', 'scontrol', 'scancel')


def unavailable() -> str | None:
    "Why a test cluster cannot start here (not root, or SLURM/munge not installed), or None."
    if os.geteuid() != 0: return 'the SLURM test cluster needs root (munged runs as user munge, slurmd as root)'
    missing = [c for c in DAEMONS + COMMANDS if shutil.which(c) is None and not Path('/usr/sbin', c).exists()]
    if missing: return f"SLURM is not installed (no {', '.join(missing)}): apt-get install -y {PACKAGES}"
    try: pwd.getpwnam('munge')
    except KeyError: return f'there is no user munge: apt-get install -y {PACKAGES}'
    if shutil.which('runuser') is None: return 'runuser (util-linux) is missing: it starts munged as user munge'
    return None


def _daemon(name: str) -> str:
    return shutil.which(name) or str(Path('/usr/sbin', name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    "The machine's memory in MB (slurmd's RealMemory must not exceed it)."
    kb = int(re.search(r'MemTotal:\s+(\d+)', Path('/proc/meminfo').read_text()).group(1))
    return kb // 1024


SLURM_CONF = """\
ClusterName=segaugtest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={def_mem}
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
KillWait=5
SchedulerParameters=sched_interval=2
NodeName={host} CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """One-node SLURM in the folder `root`: `start()` brings munged, slurmctld and slurmd up and waits until the node
    is idle; `stop()` cancels every job, waits for the queue to empty and stops the daemons by their pids."""

    def __init__(self, root):
        self.root = Path(root)
        self.host = socket.gethostname().split('.')[0]
        self.conf = self.root / 'slurm.conf'
        self.munge_dir, self.socket_dir = self.root / 'munge', self.root / 'munge-socket'
        self.socket = self.socket_dir / 'munge.socket'
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.pids: dict[str, int] = {}

    def pid_file(self, daemon: str) -> Path:
        return (self.munge_dir if daemon == 'munged' else self.root) / f'{daemon}.pid'

    def log_file(self, daemon: str) -> Path:
        return (self.munge_dir if daemon == 'munged' else self.root) / f'{daemon}.log'

    # -- commands ---------------------------------------------------------------------------------------------------
    def run(self, *cmd, check: bool = True, timeout: float = 30) -> str:
        "Run a SLURM command against this cluster; its stdout."
        r = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode: raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def node_state(self) -> str:
        return self.run('sinfo', '-h', '-N', '-o', '%T', check=False).strip()

    def queue(self) -> list[str]:
        "The ids of the jobs still in the queue (pending, running, completing), one per array task."
        return self.run('squeue', '-h', '-r', '-o', '%i', check=False).split()

    def job_info(self, job_id: str) -> dict:
        "`scontrol show job` of `job_id` as a dict (JobState, Reason, Restarts, ...), empty if SLURM forgot it."
        out = self.run('scontrol', '-o', 'show', 'job', str(job_id), check=False)
        return dict(kv.split('=', 1) for kv in out.split() if '=' in kv)

    def release_requeued(self, job_id: str, timeout: float = 60) -> dict:
        """Wait until `job_id` has been requeued (restarted at least once, pending again) and let it start now: a
        requeued job otherwise waits about 120 s (its BeginTime). Only once it is PENDING: while it is still REQUEUED
        its old step is being torn down, and moving its start time then once left it FAILED without a second start.
        Returns its `scontrol show job` record."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = self.job_info(job_id)
            if int(info.get('Restarts', 0)) >= 1 and info.get('JobState') == 'PENDING':
                self.run('scontrol', 'update', f'JobId={job_id}', 'StartTime=now')
                return info
            time.sleep(0.5)
        raise TimeoutError(f'job {job_id} was not requeued within {timeout:.0f} s: {self.job_info(job_id)}')

    def wait_empty(self, timeout: float = 60) -> None:
        "Wait until no job is pending, running or completing."
        deadline = time.time() + timeout
        while self.queue():
            if time.time() > deadline: raise TimeoutError(f'jobs still queued after {timeout:.0f} s: {self.queue()}')
            time.sleep(0.5)

    # -- start and stop ---------------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        cpus, mem = os.cpu_count() or 1, int(_mem_mb() * 0.9)
        for d in ('state', 'spool'): (self.root / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(SLURM_CONF.format(host=self.host, ctld_port=_free_port(), slurmd_port=_free_port(),
                                               socket=self.socket, root=self.root, cpus=cpus, mem=mem,
                                               def_mem=max(256, min(2048, mem // cpus // 2))))

    def _start_munge(self) -> None:
        m = pwd.getpwnam('munge')
        for d, mode in ((self.munge_dir, 0o700), (self.socket_dir, 0o711)):
            d.mkdir(mode=mode); os.chown(d, m.pw_uid, m.pw_gid); os.chmod(d, mode)
        key = self.munge_dir / 'munge.key'
        key.write_bytes(os.urandom(1024)); os.chown(key, m.pw_uid, m.pw_gid); os.chmod(key, 0o400)
        subprocess.run(['runuser', '-u', 'munge', '--', _daemon('munged'), f'--key-file={key}', f'--socket={self.socket}',
                        f'--pid-file={self.pid_file("munged")}', f'--log-file={self.log_file("munged")}',
                        f'--seed-file={self.munge_dir / "munge.seed"}'], check=True, capture_output=True, text=True, timeout=30)
        self._wait_pid('munged')

    def _wait_pid(self, daemon: str, timeout: float = 30) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                pid = int(self.pid_file(daemon).read_text().split()[0])
                os.kill(pid, 0)
                self.pids[daemon] = pid
                return pid
            except (FileNotFoundError, ValueError, IndexError, ProcessLookupError): time.sleep(0.2)
        raise RuntimeError(f'{daemon} did not start; its log ends:\n{self.log_tail(daemon)}')

    def log_tail(self, daemon: str, n: int = 15) -> str:
        try: return '\n'.join(self.log_file(daemon).read_text(errors='replace').splitlines()[-n:])
        except OSError as e: return f'(no log: {e})'

    def start(self, timeout: float = 60) -> 'Cluster':
        self.root.mkdir(parents=True, exist_ok=True); os.chmod(self.root, 0o711)  # munge must reach its folders
        self._write_config()
        self._start_munge()
        for daemon, args in (('slurmctld', ['-f', str(self.conf), '-i']), ('slurmd', ['-f', str(self.conf)])):
            subprocess.run([_daemon(daemon), *args], env=self.env, check=True, capture_output=True, text=True, timeout=30)
            self._wait_pid(daemon)
        deadline = time.time() + timeout
        while (state := self.node_state()) != 'idle':
            if time.time() > deadline:
                raise RuntimeError(f'the node is {state!r}, not idle, after {timeout:.0f} s; slurmd log:\n{self.log_tail("slurmd")}'
                                   f'\nslurmctld log:\n{self.log_tail("slurmctld")}')
            time.sleep(0.5)
        return self

    def _stop(self, daemon: str, timeout: float = 15) -> None:
        pid = self.pids.pop(daemon, None)
        if pid is None: return
        for sig, wait in ((15, timeout), (9, 5)):
            try: os.kill(pid, sig)
            except ProcessLookupError: return
            deadline = time.time() + wait
            while time.time() < deadline:
                try: os.kill(pid, 0)
                except ProcessLookupError: return
                time.sleep(0.2)

    def stop(self) -> None:
        "Cancel every job, wait for the queue to empty, stop slurmd, slurmctld and munged (by pid)."
        if 'slurmctld' in self.pids:
            with contextlib.suppress(Exception):
                self.run('scancel', '--full', f'--user={pwd.getpwuid(os.geteuid()).pw_name}', check=False)
                self.wait_empty(60)
        for daemon in ('slurmd', 'slurmctld', 'munged'): self._stop(daemon)


@contextlib.contextmanager
def one_node_cluster(root=None, keep: bool = False):
    "A started `Cluster` in `root` (default: a new temporary folder, removed afterwards unless `keep`)."
    root = Path(root or tempfile.mkdtemp(prefix='segaug-slurm-'))
    cluster = Cluster(root)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        if not keep: shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    if (why := unavailable()): raise SystemExit(f'error: {why}')
    with one_node_cluster(keep=True) as c:
        print(f'export SLURM_CONF={c.conf}\nnode {c.host}: {c.node_state()}; logs in {c.root}')
        input('Enter stops the cluster ... ')
