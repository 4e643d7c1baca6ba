#!/usr/bin/python3
"""The deployment files of examples/cluster/deploy cannot run here (no systemd,
no Kubernetes), so this checks that they agree with framex: every framex flag
and FRAMEX_ variable they set is a key the program accepts (the ingress
example's --print-config loads them as the program would), and the numbers
that must match do: ports across Deployment, probe, Service and dns://
discovery; the stop timeouts above the drain timeout.

    deploy_manifests.py path/to/ingress path/to/source
"""
import os
import re
import subprocess
import sys
import tempfile

program, source = sys.argv[1], sys.argv[2]
deploy = os.path.join(source, "examples", "cluster", "deploy")
failures = []
# The token the deployments mount from a Secret: a stand-in, since the caller reads it at start.
token = tempfile.NamedTemporaryFile("w", suffix=".token", delete=False)
token.write("a-stand-in-token-of-enough-length\n")
token.close()


def local(key, value):
    return token.name if key.endswith("token_file") or key.endswith("TOKEN_FILE") else value


def check(condition, what):
    print(("ok: " if condition else "FAILED: ") + what)
    if not condition:
        failures.append(what)


def read(name):
    with open(os.path.join(deploy, name)) as f:
        return f.read()


def settings(args):
    """A worker's command line as framex settings: {section.key: value}."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if a == "--framex-worker":
            i += 1
            continue
        key = {"--listen": "worker.listen", "--threads": "worker.threads"}.get(a, a[2:] if a.startswith("--") else None)
        if key is None or "." not in key or i + 1 >= len(args):
            failures.append("not a framex flag: " + a)
            break
        out[key] = args[i + 1]
        i += 2
    return out


def accepted(flags, env, what):
    """True when the program loads these settings (unknown keys and bad values fail)."""
    command = [program, "--print-config"]
    for key, value in flags.items():
        command += ["--" + key, local(key, value)]
    env = {name: local(name, value) for name, value in env.items()}
    run = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    check(run.returncode == 0, what + " are framex settings" + ("" if run.returncode == 0 else ": " + run.stderr.strip()))
    return run.stdout


def port(endpoint):
    return int(endpoint.rsplit(":", 1)[1].split("?")[0].split("/")[0])


# systemd: the worker's command line, and a stop timeout above the drain.
unit = read("framex-worker.service")
exec_start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M).group(2).replace("%H", "worker-host").split()
unit_settings = settings(exec_start)
accepted(unit_settings, {}, "framex-worker.service: ExecStart's flags")
stop_seconds = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))
drain_ms = int(unit_settings.get("worker.drain_timeout_ms", "10000"))
check(stop_seconds * 1000 > drain_ms, f"TimeoutStopSec ({stop_seconds} s) leaves the drain ({drain_ms} ms) time")
check("KillSignal=SIGTERM" in unit and "kill -TERM" in unit, "stopping the unit sends SIGTERM (a drain)")
check(port(unit_settings["worker.advertise"]) == port(unit_settings["worker.listen"]), "the advertised port is the one listened on")
check(unit_settings["distributed.discovery"].startswith("etcd://"), "the unit registers in etcd")

# Kubernetes workers: args, ports, probe, grace.
workers = read("workers.yaml")
args = re.findall(r'"([^"]*)"', re.search(r"args: \[(.*?)\]", workers, re.S).group(1))
worker_settings = settings(args)
accepted(worker_settings, {}, "workers.yaml: the container's args")
listen_port = port(worker_settings["worker.listen"])
container_port = int(re.search(r"containerPort: (\d+)", workers).group(1))
probe_port = int(re.search(r"tcpSocket:\s*\n\s*port: (\d+)", workers).group(1))
service_port = int(re.search(r"kind: Service.*?ports:\s*\n\s*- port: (\d+)", workers, re.S).group(1))
check(listen_port == container_port == probe_port == service_port,
      f"the worker's port agrees: listen {listen_port}, containerPort {container_port}, probe {probe_port}, Service {service_port}")
check("clusterIP: None" in workers, "the workers' Service is headless (one DNS record per pod)")
grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", workers).group(1))
pre_stop = int(re.search(r'command: \["sleep", "(\d+)"\]', workers).group(1))
k8s_drain_ms = int(worker_settings.get("worker.drain_timeout_ms", "10000"))
check(grace * 1000 > pre_stop * 1000 + k8s_drain_ms,
      f"terminationGracePeriodSeconds ({grace} s) covers preStop ({pre_stop} s) and the drain ({k8s_drain_ms} ms)")
service_name = re.search(r"kind: Service\s*\nmetadata:\s*\n\s*name: (\S+)", workers).group(1)

# Kubernetes caller: its FRAMEX_ variables, and discovery of that Service on that port.
caller = read("caller.yaml")
env = dict(re.findall(r'- name: (FRAMEX_\w+)\s*\n\s*value: "([^"]*)"', caller))
check(len(env) >= 3, "caller.yaml sets FRAMEX_ variables")
printed = accepted({}, env, "caller.yaml: its FRAMEX_ variables")
for name, value in env.items():
    key = name[len("FRAMEX_"):].lower().replace("__", ".", 1)
    check(re.search(r"^" + re.escape(key) + r" = " + re.escape(local(name, value)) + r"\s", printed, re.M) is not None,
          f"{name} sets {key}")
discovery = env["FRAMEX_DISTRIBUTED__DISCOVERY"]
check(discovery.startswith("dns://" + service_name + "."), f"the caller follows the workers' Service ({service_name})")
check(port(discovery[len("dns://"):]) == service_port, "the caller dials the workers' port")
caller_port = int(re.search(r"containerPort: (\d+)", caller).group(1))
probe = int(re.search(r"httpGet:.*?port: (\d+)", caller, re.S).group(1))
server_port = int(re.search(r"^server\.port = (\d+)", printed, re.M).group(1))
check(caller_port == probe == server_port, f"the ingress's port agrees: {server_port}, containerPort {caller_port}, probe {probe}")

os.unlink(token.name)
sys.exit(1 if failures else 0)
