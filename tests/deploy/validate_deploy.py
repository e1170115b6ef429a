#!/usr/bin/python3
"""Offline checks of deploy/ (no cluster runs here):

- every Kubernetes manifest parses as YAML and deserializes into the typed models of Debian's
  python3-kubernetes, with unknown fields refused (a typo such as `readinesProbe` fails);
- the kustomization lists every manifest and only files that exist;
- every command of a container of our images, and every ExecStart of the systemd units, names
  only flags that the program's --help lists;
- the systemd units read an environment file that the package ships, set LimitNOFILE, and use
  only variables that file defines;
- the container recipe starts from Debian bookworm-slim and installs only Debian packages (or
  the project's own .deb files from `make package`).

Usage: validate_deploy.py SOURCE_DIR BUILD_DIR
"""
import glob
import os
import re
import subprocess
import sys

import kubernetes.client as k8s
import yaml

SOURCE, BUILD = sys.argv[1], sys.argv[2]
DEPLOY = os.path.join(SOURCE, "deploy")
BIN = os.path.join(BUILD, "bin")
failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message)


# Debian's python3-kubernetes (22.6, Kubernetes 1.22) predates gRPC probes (Kubernetes 1.24).
# Its Probe model is extended with exactly the API's GRPCAction: port (int32, required) and
# service (string); everything else is Debian's model as it is.
GRPC_ACTION = {"port": "int", "service": "str"}
PROBE_EXTRA = {"grpc": "GRPCAction"}


def model_fields(type_name):
    """{json_key: type string} of a model, or None if the name is not a model."""
    if type_name == "GRPCAction":
        return dict(GRPC_ACTION)
    cls = getattr(k8s, type_name, None)
    if cls is None or not hasattr(cls, "openapi_types"):
        return None
    fields = {cls.attribute_map[attr]: t for attr, t in cls.openapi_types.items()}
    if type_name == "V1Probe":
        fields.update(PROBE_EXTRA)
    return fields


def check_strict(value, type_name, path):
    """Refuses keys the model does not have, recursively, and values of the wrong shape."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return fail("%s: expected a list" % path)
        for i, item in enumerate(value):
            check_strict(item, type_name[5:-1], "%s[%d]" % (path, i))
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return fail("%s: expected a mapping" % path)
        inner = type_name[5:-1].split(", ", 1)[1]
        for key, item in value.items():
            check_strict(item, inner, "%s.%s" % (path, key))
        return
    if type_name in ("str", "int", "bool", "float", "object", "datetime", "date"):
        expected = {"str": str, "int": int, "bool": bool, "float": (int, float)}.get(type_name)
        if type_name == "object":
            return  # IntOrString and free-form values
        if expected and (not isinstance(value, expected) or
                         (expected is int and isinstance(value, bool))):
            fail("%s: expected %s, got %r" % (path, type_name, value))
        return
    fields = model_fields(type_name)
    if fields is None:
        return fail("%s: unknown model %s" % (path, type_name))
    if not isinstance(value, dict):
        return fail("%s: expected an object (%s)" % (path, type_name))
    for key, item in value.items():
        if key not in fields:
            fail("%s: unknown field '%s' (not in %s)" % (path, key, type_name))
            continue
        check_strict(item, fields[key], "%s.%s" % (path, key))


def model_name(doc):
    group_version = doc.get("apiVersion", "")
    version = group_version.split("/")[-1]
    return version[0].upper() + version[1:] + doc.get("kind", "")


def strip_extensions(value):
    """The manifest without the fields Debian's model predates, for its own deserializer."""
    if isinstance(value, dict):
        return {k: strip_extensions(v) for k, v in value.items() if k != "grpc"}
    if isinstance(value, list):
        return [strip_extensions(v) for v in value]
    return value


api = k8s.ApiClient()
manifests = sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml")))
kustomization = os.path.join(DEPLOY, "kubernetes", "kustomization.yaml")
objects = []
for path in manifests:
    if path == kustomization:
        continue
    name = os.path.relpath(path, SOURCE)
    with open(path) as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            fail("%s: not YAML: %s" % (name, e))
            continue
    for doc in docs:
        kind = model_name(doc)
        where = "%s: %s %s" % (name, doc.get("kind"), doc.get("metadata", {}).get("name"))
        if getattr(k8s, kind, None) is None:
            fail("%s: no model %s in python3-kubernetes" % (where, kind))
            continue
        before = len(failures)
        check_strict(doc, kind, where)
        if len(failures) == before:
            try:
                # Debian's deserializer with client-side validation: required fields present.
                api._ApiClient__deserialize(strip_extensions(doc), kind)
            except Exception as e:  # its errors are ValueError and TypeError
                fail("%s: does not deserialize into %s: %s" % (where, kind, e))
        objects.append((where, doc))
print("manifests: %d objects in %d files" % (len(objects), len(manifests) - 1))

with open(kustomization) as f:
    kust = yaml.safe_load(f)
listed = set(kust.get("resources", []))
on_disk = {os.path.basename(p) for p in manifests} - {"kustomization.yaml"}
for missing in sorted(on_disk - listed):
    fail("kustomization.yaml does not list %s" % missing)
for extra in sorted(listed - on_disk):
    fail("kustomization.yaml lists %s, which does not exist" % extra)
for key in kust:
    if key not in ("apiVersion", "kind", "namespace", "resources", "images", "commonLabels",
                   "labels"):
        fail("kustomization.yaml: unexpected key %s" % key)

kinds = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in objects}
sts = kinds.get(("StatefulSet", "etcd"))
if not sts or sts["spec"]["replicas"] != 3:
    fail("etcd: expected a StatefulSet of 3 members")
if kinds.get(("Service", "etcd"), {}).get("spec", {}).get("clusterIP") != "None":
    fail("etcd: expected a headless Service")
proxy = kinds.get(("Deployment", "sluice-proxy"))
if not proxy or proxy["spec"]["replicas"] < 2:
    fail("sluice-proxy: expected a Deployment of 2 or more replicas")
else:
    c = proxy["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in c:
            fail("sluice-proxy: no %s" % probe)
if ("PodDisruptionBudget", "sluice-proxy") not in kinds:
    fail("sluice-proxy: no PodDisruptionBudget")
node_ports = [p.get("nodePort") for (k, _), d in kinds.items() if k == "Service"
              for p in d["spec"].get("ports", [])]
if 30051 not in node_ports:
    fail("no NodePort 30051 Service")
greeter = kinds.get(("Deployment", "greeter"))
if greeter:
    pod = greeter["spec"]["template"]["spec"]
    sidecar = [c for c in pod["containers"] if (c.get("args") or [""])[0] == "register"]
    if not sidecar:
        fail("greeter: no sluice register sidecar")
    else:
        env = {e["name"]: e for e in sidecar[0].get("env", [])}
        if env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get(
                "fieldPath") != "status.podIP":
            fail("greeter: the sidecar does not take the pod IP from the downward API")
        if "preStop" not in sidecar[0].get("lifecycle", {}):
            fail("greeter: the sidecar has no preStop that deregisters")
    if pod.get("terminationGracePeriodSeconds", 30) <= 13:
        fail("greeter: the termination grace period is not longer than the drain")
else:
    fail("no greeter Deployment")


# Flags each program accepts, from its own --help.
help_cache = {}


def help_text(argv):
    key = tuple(argv)
    if key not in help_cache:
        try:
            run = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=30)
            help_cache[key] = run.stdout + run.stderr
        except OSError as e:
            fail("cannot run %s --help: %s (build it first)" % (argv[0], e))
            help_cache[key] = ""
    return help_cache[key]


def check_flags(where, program_argv, args):
    text = help_text(program_argv)
    for arg in args:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        if not re.search(r"(^|[\s,])" + re.escape(flag) + r"([\s,=]|$)", text, re.M):
            fail("%s: %s is not a flag of %s" % (where, flag, " ".join(
                os.path.basename(a) for a in program_argv)))


PROGRAMS = {"sluice": os.path.join(BIN, "sluice"),
            "greeter_server": os.path.join(BIN, "greeter_server"),
            "etcd": "etcd"}
checked_commands = 0
for where, doc in objects:
    spec = doc.get("spec", {}).get("template", {}).get("spec")
    if not spec:
        continue
    for c in spec.get("containers", []):
        image = c["image"].split(":")[0]
        command = c.get("command") or {"sluice": ["sluice"], "sluice-greeter": ["greeter_server"],
                                       "sluice-etcd": ["etcd"]}[image]
        args = c.get("args", [])
        program = PROGRAMS.get(command[0])
        if program is None:
            fail("%s: container %s runs %s, not a program of this project" % (
                where, c["name"], command[0]))
            continue
        argv = [program]
        if command[0] == "sluice":
            argv.append(args[0])  # the subcommand
            args = args[1:]
        check_flags("%s container %s" % (where, c["name"]), argv, list(command[1:]) + args)
        checked_commands += 1
print("container commands checked against --help: %d" % checked_commands)

# systemd units.
systemd = os.path.join(DEPLOY, "systemd")
for unit in sorted(glob.glob(os.path.join(systemd, "*.service"))):
    name = os.path.basename(unit)
    with open(unit) as f:
        text = f.read()
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    if "LimitNOFILE" not in settings:
        fail("%s: no LimitNOFILE" % name)
    env_file = settings.get("EnvironmentFile", "")
    if not env_file.startswith("/etc/sluice/"):
        fail("%s: no EnvironmentFile under /etc/sluice" % name)
        continue
    shipped = os.path.join(systemd, os.path.basename(env_file).replace("%i", "greeter"))
    if not os.path.exists(shipped):
        fail("%s: reads %s but deploy/systemd has no %s" % (name, env_file, shipped))
        continue
    defined = set()
    with open(shipped) as f:
        for line in f:
            if re.match(r"^[A-Z_]+=", line):
                defined.add(line.split("=", 1)[0])
    exec_start = settings["ExecStart"].split()
    used = set(re.findall(r"\$\{?([A-Z_]+)\}?", settings["ExecStart"]))
    for var in sorted(used - defined):
        fail("%s: ExecStart uses $%s, which %s does not define" % (name, var, shipped))
    if exec_start[0] != "sluice":
        fail("%s: ExecStart runs %s, not sluice" % (name, exec_start[0]))
        continue
    argv = [PROGRAMS["sluice"], exec_start[1]]
    flags = [a for a in exec_start[2:] if a.startswith("--")]
    # The free-form *_ARGS variables hold flags too.
    for var in used:
        if var.endswith("_ARGS"):
            with open(shipped) as f:
                for line in f:
                    if line.startswith(var + "="):
                        flags += [a for a in line.split("=", 1)[1].split() if a.startswith("--")]
    check_flags(name, argv, flags)
print("systemd units checked: %d" % len(glob.glob(os.path.join(systemd, "*.service"))))

# The container recipe: Debian bookworm-slim and Debian packages only.
dockerfile = os.path.join(DEPLOY, "Dockerfile")
with open(dockerfile) as f:
    lines = f.read().replace("\\\n", " ").splitlines()
stages = 0
for line in lines:
    words = line.split()
    if not words or words[0].startswith("#"):
        continue
    instruction = words[0].upper()
    if instruction == "FROM":
        stages += 1
        if words[1] != "debian:bookworm-slim":
            fail("Dockerfile: FROM %s, not debian:bookworm-slim" % words[1])
    elif instruction == "ADD":
        fail("Dockerfile: ADD (may fetch from the network); use COPY of the project's files")
    elif instruction == "COPY":
        for source in words[1:-1]:
            if not re.fullmatch(r"build/package/[a-z-]+_\*\.deb", source):
                fail("Dockerfile: COPY %s is not one of the project's .deb files" % source)
    elif instruction == "RUN":
        command = " ".join(words[1:])
        for tool in ("curl", "wget", "pip", "npm", "git clone", "go install", "gem install"):
            if re.search(r"\b" + re.escape(tool) + r"\b", command):
                fail("Dockerfile: RUN uses %s: only Debian packages may be installed" % tool)
        for part in command.split("&&"):
            part = part.split()
            if part[:2] == ["apt-get", "install"]:
                for package in part[2:]:
                    if package.startswith("-"):
                        continue
                    if package.startswith("/tmp/"):
                        if not re.fullmatch(r"/tmp/[a-z-]+_\*\.deb", package):
                            fail("Dockerfile: installs %s, not a project .deb" % package)
                        continue
                    show = subprocess.run(["apt-cache", "show", package], capture_output=True)
                    if show.returncode != 0:
                        fail("Dockerfile: %s is not a Debian package" % package)
            elif part and part[0] not in ("apt-get", "rm"):
                fail("Dockerfile: RUN %s: only apt-get and rm are expected" % part[0])
if stages == 0:
    fail("Dockerfile: no FROM")
print("Dockerfile stages checked: %d" % stages)

if failures:
    print("%d passed, %d failed" % (0, len(failures)))
    sys.exit(1)
print("deploy/ is valid")
