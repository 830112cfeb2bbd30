"""A real Kubernetes control plane on 127.0.0.1 for the `kube` test tier: etcd, kube-apiserver, kube-scheduler.

The binaries come from `.ci/kube.sh` (built once into ~/.cache/orch-kube/bin, or $ORCH_KUBE_BIN). This
module starts them with their own certificates and static tokens in a throwaway folder, waits until
the API server is ready, and stops exactly the processes it started (never anything found by name).
There is no kubelet and no kube-controller-manager: `tests.kube_real.nodes.NodeSim` plays the
kubelets, and what the missing controllers would have done is listed in docs/kubernetes.md.

    python3 -m tests.kube_real.cluster smoke   # start, check, stop (what `.ci/kube.sh smoke` runs)
    python3 -m tests.kube_real.cluster up      # start and keep running; prints a kubeconfig path
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

ADMIN_TOKEN = "orch-test-admin"  # user "orch-admin" in group system:masters
SCHEDULER_TOKEN = "orch-test-scheduler"  # the user the bootstrap RBAC policy grants the scheduler's rights
SERVICE_RANGE = "10.96.0.0/24"
ISSUER = "https://kubernetes.default.svc"
READY_TIMEOUT_S = 90.0  # a cold API server on a busy 2-core CI machine takes 5-20 s


def cache_dir() -> Path:
    return Path(os.environ.get("ORCH_KUBE_CACHE") or Path.home() / ".cache" / "orch-kube")


def find_binaries() -> Path | None:
    """The folder with kube-apiserver, kube-scheduler and etcd, or None when `.ci/kube.sh` never ran."""
    folder = Path(os.environ.get("ORCH_KUBE_BIN") or cache_dir() / "bin")
    wanted = ("kube-apiserver", "kube-scheduler", "etcd")
    return folder if all(os.access(folder / name, os.X_OK) for name in wanted) else None


def kube_required() -> bool:
    """Whether a missing server fails instead of skipping: ORCH_REQUIRE_KUBE=1 (.ci/run), or CI=true
    unless ORCH_REQUIRE_KUBE=0 says otherwise."""
    flag = os.environ.get("ORCH_REQUIRE_KUBE", "")
    if flag:
        return flag == "1"
    return os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Child setup: SIGTERM when the test process dies, so a killed pytest leaves no server behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    """A CA, the API server's serving certificate for 127.0.0.1, and the service-account key pair."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=orch-test-ca", cwd=folder)
    (folder / "san.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
             "-subj", "/CN=kube-apiserver", cwd=folder)
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "apiserver.crt", "-days", "2", "-extfile", "san.cnf", cwd=folder)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)


def kubeconfig(server: str, ca: Path, token: str, user: str) -> str:
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: orch-test\n  cluster:\n    server: {server}\n"
            f"    certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\n"
            f"contexts:\n- name: orch-test\n  context:\n    cluster: orch-test\n    user: {user}\n"
            f"current-context: orch-test\n")


@dataclass
class _Proc:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None


class Cluster:
    """One control plane. `start()` then `api_client()`; `restart_apiserver()` for outage tests; `stop()`."""

    def __init__(self, binaries: Path, folder: Path) -> None:
        self.bin = binaries
        self.dir = folder
        self.etcd_port, self.etcd_peer = free_port(), free_port()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca = folder / "ca.crt"
        self.procs: dict[str, _Proc] = {}
        self.audit_log = folder / "audit.log"  # JSON lines: ServiceAccounts' requests and their answers
        self._etcd_data: Path | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Cluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        make_certificates(self.dir)
        (self.dir / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},orch-admin,orch-admin,"system:masters"\n'
            f"{SCHEDULER_TOKEN},system:kube-scheduler,system:kube-scheduler\n")
        # Every request of a ServiceAccount is audited, so the RBAC tests can count denials (403).
        (self.dir / "audit-policy.yaml").write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
            "- level: Metadata\n  userGroups: [system:serviceaccounts]\n- level: None\n")
        scheduler_config = self.dir / "scheduler.kubeconfig"
        scheduler_config.write_text(kubeconfig(self.url, self.ca, SCHEDULER_TOKEN, "scheduler"))
        (self.dir / "admin.kubeconfig").write_text(kubeconfig(self.url, self.ca, ADMIN_TOKEN, "admin"))
        # etcd's data on tmpfs when there is one: fsync on a CI disk makes every write slow.
        shm = Path("/dev/shm")
        data = Path(tempfile.mkdtemp(prefix="orch-etcd-", dir=shm if shm.is_dir() else self.dir))
        self._etcd_data = data
        self._add("etcd", [
            str(self.bin / "etcd"), "--name", "orch-test", "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-cluster", f"orch-test=http://127.0.0.1:{self.etcd_peer}",
            "--log-level", "warn"])
        d = self.dir
        self._add("kube-apiserver", [
            str(self.bin / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            "--insecure-port=0", f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}", f"--client-ca-file={self.ca}",
            f"--token-auth-file={d / 'tokens.csv'}", "--authorization-mode=RBAC",
            f"--service-account-key-file={d / 'sa.pub'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-account-issuer={ISSUER}", f"--api-audiences={ISSUER}",
            f"--service-cluster-ip-range={SERVICE_RANGE}", "--profiling=false", "--v=1",
            f"--audit-policy-file={d / 'audit-policy.yaml'}", f"--audit-log-path={self.audit_log}"])
        self._add("kube-scheduler", [
            str(self.bin / "kube-scheduler"), f"--kubeconfig={scheduler_config}",
            f"--authentication-kubeconfig={scheduler_config}", f"--authorization-kubeconfig={scheduler_config}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--port=0",
            "--v=1"])
        try:
            self._spawn("etcd")
            self._spawn("kube-apiserver")
            self.wait_ready()
            self._spawn("kube-scheduler")
        except BaseException:
            self.stop()
            raise
        return self

    def _add(self, name: str, argv: list[str]) -> None:
        self.procs[name] = _Proc(name, argv, self.dir / f"{name}.log")

    def _spawn(self, name: str) -> None:
        proc = self.procs[name]
        with proc.log.open("ab") as log:
            proc.popen = subprocess.Popen(proc.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          preexec_fn=_die_with_parent)

    def _end(self, name: str, timeout: float = 15.0) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.popen is None:
            return
        if proc.popen.poll() is None:
            proc.popen.terminate()
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout)
        proc.popen = None

    def stop(self) -> None:
        """Stop the three processes this object started, in reverse order; safe to call twice."""
        for name in ("kube-scheduler", "kube-apiserver", "etcd"):
            self._end(name)
        if self._etcd_data is not None:
            shutil.rmtree(self._etcd_data, ignore_errors=True)
            self._etcd_data = None

    def restart_apiserver(self, down_s: float = 0.0) -> None:
        """Stop the API server (SIGTERM, as a rolling control-plane upgrade does), wait, start it again."""
        self._end("kube-apiserver")
        if down_s:
            time.sleep(down_s)
        self._spawn("kube-apiserver")
        self.wait_ready()

    def stop_apiserver(self) -> None:
        self._end("kube-apiserver")

    def start_apiserver(self) -> None:
        self._spawn("kube-apiserver")
        self.wait_ready()

    # --- use ------------------------------------------------------------------------------------

    def ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca))
        req = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=5, context=context) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, proc in self.procs.items():
                if proc.popen is not None and proc.popen.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.popen.returncode}; log:\n{self.log_tail(name)}")
            if self.ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"kube-apiserver not ready after {timeout:.0f} s; log:\n{self.log_tail('kube-apiserver')}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def audit(self) -> list[dict[str, Any]]:
        """The audit events so far (the log backend writes each before the answer goes out)."""
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()]

    def api_client(self, token: str = ADMIN_TOKEN) -> ApiClient:
        """A client of the real `kubernetes` package, as the controller builds one from a kubeconfig."""
        from kubernetes import client

        configuration = client.Configuration(host=self.url)
        configuration.ssl_ca_cert = str(self.ca)
        configuration.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(configuration)


def _main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("smoke", "up"):
        print("usage: python3 -m tests.kube_real.cluster smoke|up", file=sys.stderr)
        return 2
    binaries = find_binaries()
    if binaries is None:
        print("no kube-apiserver built: run `bash .ci/kube.sh` first", file=sys.stderr)
        return 1
    folder = Path(tempfile.mkdtemp(prefix="orch-kube-"))
    started = time.monotonic()
    cluster = Cluster(binaries, folder).start()
    try:
        from kubernetes import client

        version = client.VersionApi(cluster.api_client()).get_code()
        print(f"kube-apiserver {version.git_version} ready at {cluster.url} in {time.monotonic() - started:.1f} s")
        if argv[0] == "up":
            print(f"export KUBECONFIG={folder / 'admin.kubeconfig'}   # Ctrl-C stops it")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
