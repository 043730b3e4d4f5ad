#!/usr/bin/env bash
# Checks deploy/kubernetes/ offline; nothing is applied to a cluster. Every manifest is validated
# with kubernetes-validate against the API schemas of the Kubernetes versions below in strict
# mode (an unknown field is an error, and so is a kind without a schema), then the rules the
# manifests must keep with each other, with docker/Dockerfile and with docs/OPERATIONS.md.
# OPERATIONS_GUIDE overrides the guide whose reference table names the settings.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=deploy/kubernetes
# The oldest and the newest schema set that kubernetes-validate 1.37.0 ships.
versions="1.34 1.37"
venv=target/kubernetes-check/venv
if [ ! -x "$venv/bin/python" ] ||
  ! "$venv/bin/python" -c 'import yaml, kubernetes_validate.version as v; assert v.__version__ == "1.37.0"' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
# shellcheck disable=SC2086
"$venv/bin/python" - "$dir" "${OPERATIONS_GUIDE:-docs/OPERATIONS.md}" $versions <<'PY'
import glob
import os
import re
import sys

import yaml
from kubernetes_validate import utils

directory, guide_path, *versions = sys.argv[1:]
errors = []
# Files that `kubectl apply -k` must not apply: a Secret template with placeholders, and the
# migration Job (generateName, created with `kubectl create` before each rollout).
BY_HAND = {"secret-env.example.yaml", "migrate-job.yaml"}
NAMESPACE = "auth"


def fail(message):
    errors.append(message)


def name_of(obj):
    meta = obj.get("metadata", {})
    return meta.get("name") or meta.get("generateName", "?")


def seconds(value):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", str(value).strip())
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def mebibytes(value):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(value))
    if not m:
        raise ValueError(f"not a memory quantity: {value!r}")
    return int(m.group(1)) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, None: 1 / 2**20}[m.group(2)]


# --- schemas ---------------------------------------------------------------------------------
files = sorted(os.path.basename(p) for p in glob.glob(f"{directory}/*.yaml") + glob.glob(f"{directory}/*.yml"))
objects = []  # (file, object)
for f in files:
    if f == "kustomization.yaml":
        continue
    with open(os.path.join(directory, f)) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    if not docs:
        fail(f"{f}: no object")
    for obj in docs:
        label = f"{f}: {obj.get('kind')}/{name_of(obj)}"
        for version in versions:
            try:
                utils.validate(obj, version, strict=True)
            except utils.ValidationError as e:
                fail(f"{label} against {version}: {'.'.join(map(str, e.path))}: {e.message}")
            except (utils.SchemaNotFoundError, utils.InvalidSchemaError, utils.VersionNotSupportedError) as e:
                fail(f"{label}: {e.message}")
        if obj.get("kind") != "Namespace" and obj.get("metadata", {}).get("namespace") != NAMESPACE:
            fail(f"{label}: metadata.namespace is not {NAMESPACE}")
        objects.append((f, obj))

# kustomization.yaml has no API schema: check its shape and that it lists exactly the rest.
kust = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
if kust.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kust.get("kind") != "Kustomization":
    fail("kustomization.yaml: not a kustomize.config.k8s.io/v1beta1 Kustomization")
if kust.get("namespace") != NAMESPACE:
    fail(f"kustomization.yaml: namespace is not {NAMESPACE}")
unknown = set(kust) - {"apiVersion", "kind", "namespace", "resources", "images", "labels", "commonAnnotations"}
if unknown:
    fail(f"kustomization.yaml: unexpected fields {sorted(unknown)}")
listed = kust.get("resources") or []
for r in listed:
    if r not in files:
        fail(f"kustomization.yaml lists {r}, which does not exist")
for r in sorted(BY_HAND & set(listed)):
    fail(f"kustomization.yaml lists {r}, which must be applied by hand only")
for f in sorted(set(files) - set(listed) - BY_HAND - {"kustomization.yaml"}):
    fail(f"kustomization.yaml does not list {f}")


def find(kind, name=None):
    found = [o for _, o in objects if o.get("kind") == kind and (name is None or name_of(o) == name)]
    if len(found) != 1:
        fail(f"expected exactly one {kind}{' ' + name if name else ''}, found {len(found)}")
        return {}
    return found[0]


config = find("ConfigMap", "auth-service-config").get("data", {})
env_secret = find("Secret", "auth-service-env")
secret_keys = set(env_secret.get("stringData", {})) | set(env_secret.get("data", {}))
deployment = find("Deployment", "auth-service")
job = find("Job")
cronjob = find("CronJob")
service = find("Service", "auth-service")
pdb = find("PodDisruptionBudget", "auth-service")
hpa = find("HorizontalPodAutoscaler", "auth-service")
if errors:  # the rules below assume the objects exist and are well-formed
    print("\n".join(f"kubernetes: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)

# --- settings: only real ones, and every development value of config/default.toml overridden --
guide = open(guide_path).read()
settings = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", guide, re.M))
for key in sorted(set(config) | secret_keys):
    if key not in settings:
        fail(f"{key} (ConfigMap/Secret) is not a setting in the reference table of {guide_path}")
for key in ("DATABASE_URL", "REDIS_URL"):
    if key in config:
        fail(f"{key} may carry a password: it belongs in the Secret auth-service-env, not the ConfigMap")
    if key not in secret_keys:
        fail(f"{key} missing from the Secret auth-service-env")
for line in open("config/default.toml"):
    m = re.match(r"\s*([a-z0-9_]+)\s*=", line)
    if m and m.group(1).upper() not in set(config) | secret_keys:
        fail(f"{m.group(1).upper()} keeps the development value of config/default.toml (set it in the ConfigMap)")

# --- pods: the image's user, the hardening, the same image and environment everywhere -------
dockerfile = open("docker/Dockerfile").read()
uid = int(re.search(r"--uid (\d+)", dockerfile).group(1))
gid = int(re.search(r"--gid (\d+)", dockerfile).group(1))
if not re.search(r'^ENTRYPOINT \["auth-service"\]', dockerfile, re.M):
    fail("docker/Dockerfile's ENTRYPOINT is no longer [\"auth-service\"]: the containers' args assume it")
pods = {
    "Deployment": deployment["spec"]["template"]["spec"],
    "Job": job["spec"]["template"]["spec"],
    "CronJob": cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"],
}
server = next((c for c in pods["Deployment"]["containers"] if c["name"] == "auth-service"), None)
if server is None:
    print("kubernetes: the Deployment has no container auth-service", file=sys.stderr)
    sys.exit(1)
for kind, pod in pods.items():
    ctx = pod.get("securityContext", {})
    if pod.get("automountServiceAccountToken") is not False:
        fail(f"{kind}: automountServiceAccountToken is not false")
    if ctx.get("runAsNonRoot") is not True or ctx.get("runAsUser") != uid or ctx.get("runAsGroup") != gid:
        fail(f"{kind}: pod must run as non-root uid {uid} gid {gid} (docker/Dockerfile)")
    if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(f"{kind}: seccompProfile is not RuntimeDefault")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        where = f"{kind} container {c['name']}"
        if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{where}: needs allowPrivilegeEscalation false and readOnlyRootFilesystem true")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail(f"{where}: does not drop ALL capabilities")
        if "command" in c:
            fail(f"{where}: overrides the image's ENTRYPOINT; pass the subcommand as args")
        if c.get("image") != server.get("image"):
            fail(f"{where}: image {c.get('image')} differs from the Deployment's {server.get('image')}")
        if c.get("envFrom") != server.get("envFrom"):
            fail(f"{where}: envFrom differs from the Deployment's")
        for e in c.get("env", []):
            if e["name"] not in settings:
                fail(f"{where}: env {e['name']} is not a setting in {guide_path}")
        if "lifecycle" in c and "preStop" in c["lifecycle"]:
            fail(f"{where}: has a preStop hook; the server waits SHUTDOWN_DELAY itself, so it would be paid twice")
        for ref in c.get("envFrom", []):
            if "configMapRef" in ref and ref["configMapRef"]["name"] != "auth-service-config":
                fail(f"{where}: envFrom names ConfigMap {ref['configMapRef']['name']}, which is not here")
            if "secretRef" in ref and ref["secretRef"]["name"] != "auth-service-env":
                fail(f"{where}: envFrom names Secret {ref['secretRef']['name']}, which is not here")

args = [c.get("args") for c in pods["Job"].get("initContainers", []) + pods["Job"]["containers"]]
if args != [["migrate"], ["seed-roles"]]:
    fail(f"Job: must run migrate, then seed-roles (init container, then container); runs {args}")
if [c.get("args") for c in pods["CronJob"]["containers"]] != [["migrate"]]:
    fail("CronJob: must run migrate")
for kind, spec in (("Job", job["spec"]), ("CronJob", cronjob["spec"]["jobTemplate"]["spec"])):
    if "backoffLimit" not in spec or "ttlSecondsAfterFinished" not in spec:
        fail(f"{kind}: needs backoffLimit and ttlSecondsAfterFinished")
if server.get("args") != ["serve"]:
    fail("Deployment: the container must run serve")

# --- shutdown and probes -------------------------------------------------------------------
delay, grace = seconds(config["SHUTDOWN_DELAY"]), seconds(config["SHUTDOWN_GRACE"])
ready = server.get("readinessProbe", {})
# docs/OPERATIONS.md, "Shutdown": SHUTDOWN_DELAY must exceed the check interval x the failures
# needed, plus one interval (the last success may have come just before SIGTERM).
period = ready.get("periodSeconds", 10)
detect = period * ready.get("failureThreshold", 3) + period
if not detect < delay:
    fail(f"readiness periodSeconds x (failureThreshold + 1) = {detect}s is not below SHUTDOWN_DELAY = {delay:g}s:"
         " the pod could stop serving before it is taken out of the Service")
termination = pods["Deployment"].get("terminationGracePeriodSeconds", 30)
ACTOR_STOP = 5  # docs/OPERATIONS.md, "Shutdown": each actor is given up to 5 seconds
if not termination > delay + grace + ACTOR_STOP:
    fail(f"terminationGracePeriodSeconds = {termination} must exceed SHUTDOWN_DELAY + SHUTDOWN_GRACE +"
         f" {ACTOR_STOP}s of actor shutdown = {delay + grace + ACTOR_STOP:g}s")
for probe, path in (("readinessProbe", "/api/v1/readyz"), ("livenessProbe", "/api/v1/healthz"),
                    ("startupProbe", "/api/v1/healthz")):
    if server.get(probe, {}).get("httpGet", {}).get("path") != path:
        fail(f"Deployment: {probe} must GET {path}")
if deployment["spec"]["strategy"].get("rollingUpdate", {}).get("maxUnavailable") != 0:
    fail("Deployment: rollingUpdate.maxUnavailable must be 0")

# --- ports, selectors, the key mount, sizing -----------------------------------------------
ports = {p.get("name"): p["containerPort"] for p in server.get("ports", [])}
if ports.get("http") != int(config["BIND_ADDR"].rsplit(":", 1)[1]):
    fail("Deployment: container port http differs from BIND_ADDR's port")
if "METRICS_BIND_ADDR" in config and ports.get("metrics") != int(config["METRICS_BIND_ADDR"].rsplit(":", 1)[1]):
    fail("Deployment: container port metrics differs from METRICS_BIND_ADDR's port")
labels = deployment["spec"]["template"]["metadata"]["labels"]
for kind, selector in (("Service", service["spec"]["selector"]), ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"]),
                       ("Deployment", deployment["spec"]["selector"]["matchLabels"])):
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        fail(f"{kind}: selector {selector} does not select the Deployment's pods")
for p in service["spec"]["ports"]:
    if p.get("targetPort") not in ("http", ports.get("http")):
        fail(f"Service: port {p.get('port')} does not target the http port")
if hpa["spec"]["scaleTargetRef"].get("name") != name_of(deployment):
    fail("HorizontalPodAutoscaler: does not target the Deployment")
if hpa["spec"]["minReplicas"] > deployment["spec"]["replicas"] or hpa["spec"]["minReplicas"] < 2:
    fail("HorizontalPodAutoscaler: minReplicas must be at least 2 and at most the Deployment's replicas")
volumes = {v["name"]: v for v in pods["Deployment"].get("volumes", [])}
mounts = [m for m in server.get("volumeMounts", []) if m["mountPath"] == config["JWT_KEYS_DIR"]]
if len(mounts) != 1 or not mounts[0].get("readOnly") or \
        volumes.get(mounts[0]["name"], {}).get("secret", {}).get("secretName") != "auth-service-keys":
    fail(f"Deployment: the Secret auth-service-keys must be mounted read-only at JWT_KEYS_DIR ({config['JWT_KEYS_DIR']})")
# Sizing (README.md): 2 x (peak RSS of the c=256 run, 50 MiB rounded up from docs/BENCHMARKS.md
# + 16 MiB of log buffer + 12 MiB of token and standing caches + one argon2 buffer per hashing thread).
concurrency = int(config.get("HASH_CONCURRENCY", "0"))
if concurrency < 1:
    fail("HASH_CONCURRENCY must be set to a positive number: 0 sizes the hash pool, and its memory, by the node's CPUs")
argon2_mib = int(config.get("ARGON2_MEMORY_KIB", "19456")) / 1024
needed = 2 * (50 + 16 + 12 + concurrency * argon2_mib)
limit = mebibytes(server.get("resources", {}).get("limits", {}).get("memory", "0"))
if limit < needed:
    fail(f"Deployment: memory limit {limit:g} MiB is below the sizing rule's {needed:.0f} MiB")

if errors:
    print("\n".join(f"kubernetes: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"kubernetes: {len(objects)} objects in {len(files) - 1} files valid against Kubernetes "
      f"{', '.join(versions)} (strict); kustomization, settings, security, probes and shutdown timing consistent")
PY
