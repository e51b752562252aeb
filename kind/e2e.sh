#!/usr/bin/env bash
# `make kind-e2e`: pullguard on a real Kind cluster, installed by its DaemonSet. Needs Docker, kind and
# kubectl; cosign, notation and oras come from scripts/fetch-tools.sh. Run from anywhere; it cleans up.
#
#  1. a cluster (kind/e2e/cluster.yaml: control plane + worker, no patches, no extraMounts) and a local
#     registry at localhost:5001 (Kind's local-registry recipe, hosts.toml on every node);
#  2. loads dist/pullguard-image.tar (`kind load image-archive`) and applies kind/e2e (deploy/base with a
#     policy that verifies cosign and notation signatures); waits for the DaemonSet to be ready on every
#     node, i.e. installed (the installer restarts each node's containerd through nsenter + systemd);
#  3. pushes busybox three times (distinct digests), signs one with cosign and one with notation;
#  4. a cosign-signed and a notation-signed pod reach Running; an unsigned pod ends in ErrImagePull with
#     pullguard's reason in `kubectl describe`;
#  5. the same policy in audit mode: the unsigned image then runs;
#  6. a broken policy push is refused (DaemonSet not ready, last good policy kept), then
#     `kubectl delete` of the DaemonSet uninstalls from every node (config.toml restored, bin_dir empty);
#  7. deletes the cluster and the registry (also on failure).
#
#   KIND_E2E_KEEP=1   keep the cluster and registry for debugging
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cluster=${KIND_E2E_CLUSTER:-pullguard-e2e}
reg_name=${cluster}-registry
reg_port=5001
gen=$here/e2e/generated
work=$(mktemp -d)
ns=pullguard-system

say() { printf '\n=== %s\n' "$*"; }
die() { echo "kind-e2e: FAIL: $*" >&2; exit 1; }
for t in docker kind kubectl; do command -v "$t" >/dev/null || die "$t is required (see kind/README.md)"; done

tools=$("$repo/scripts/fetch-tools.sh")
cosign=$tools/cosign notation=$tools/notation
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config COSIGN_PASSWORD='' COSIGN_YES=true
mkdir -p "$HOME"

cleanup() {
  local rc=$?
  if [[ "${KIND_E2E_KEEP:-}" == 1 ]]; then
    echo "kind-e2e: kept cluster $cluster and registry $reg_name (KIND_E2E_KEEP=1)"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    docker rm -f "$reg_name" >/dev/null 2>&1 || true
  fi
  rm -rf "$work" "$gen"
  [[ $rc -eq 0 ]] && echo "kind-e2e: PASS" || echo "kind-e2e: FAIL (exit $rc)"
}
trap cleanup EXIT

say "1. cluster and local registry"
[[ -f "$repo/dist/pullguard-image.tar" ]] || make -C "$repo" image-amd64
docker run -d --restart=always -p "127.0.0.1:$reg_port:5000" --network bridge --name "$reg_name" registry:2 >/dev/null
kind create cluster --name "$cluster" --config "$here/e2e/cluster.yaml" --wait 120s
docker network connect kind "$reg_name"
nodes=$(kind get nodes --name "$cluster")
for node in $nodes; do
  docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:$reg_port"
  printf '[host."http://%s:5000"]\n' "$reg_name" | docker exec -i "$node" tee "/etc/containerd/certs.d/localhost:$reg_port/hosts.toml" >/dev/null
  docker exec "$node" cp /etc/containerd/config.toml /tmp/config.toml.before-pullguard
done

say "2. image and signatures"
images=()
for name in cosign notation unsigned unsigned-audit; do
  ref=localhost:$reg_port/e2e/$name:v1
  # Distinct content, so each name has its own digest (a signature is on a digest).
  printf 'FROM busybox:1.37\nRUN echo %s > /e2e-name\n' "$name" | docker build -q -t "$ref" - >/dev/null
  docker push -q "$ref" >/dev/null
  digest=$(docker inspect --format '{{index .RepoDigests 0}}' "$ref"); digest=${digest#*@}
  images+=("localhost:$reg_port/e2e/$name@$digest")
done
img_cosign=${images[0]} img_notation=${images[1]} img_unsigned=${images[2]} img_audit=${images[3]}
mkdir -p "$gen"
"$cosign" generate-key-pair --output-key-prefix "$work/cosign" >/dev/null
"$cosign" sign --key "$work/cosign.key" --tlog-upload=false --use-signing-config=false --allow-http-registry \
  --allow-insecure-registry -y "$img_cosign"
"$notation" cert generate-test --default e2e >/dev/null
"$notation" sign --insecure-registry "$img_notation"
cp "$work/cosign.pub" "$gen/cosign.pub"
cp "$XDG_CONFIG_HOME/notation/localkeys/e2e.crt" "$gen/notation-ca.pem"

policy() { # $1: enforce|audit, $2: the cosign key path the policy names
  cat <<POLICY
version: 1
mode: $1
default: deny
rules:
  - {name: pause, match: registry.k8s.io/pause, action: allow}
  - {name: kubernetes, match: "registry.k8s.io/**", action: allow}
  - {name: kind, match: "docker.io/kindest/*", action: allow}
  - {name: pullguard, match: localhost/pullguard, action: allow}
  - name: cosign-signed
    match: localhost:$reg_port/e2e/cosign
    action: verify
    authorities:
      - {name: release, cosign: {keys: [$2]}}
  - name: notation-signed
    match: localhost:$reg_port/e2e/notation
    action: verify
    authorities:
      - name: e2e
        notation:
          truststore: /etc/pullguard/notation
          signatureVerification: {level: strict}
          trustStores: ["ca:e2e"]
          trustedIdentities: ["*"]
  - name: everything-else-local
    match: "localhost:$reg_port/**"
    action: verify
    authorities:
      - {name: release, cosign: {keys: [$2]}}
POLICY
}

ready_everywhere() {
  kubectl -n "$ns" rollout status ds/pullguard-node --timeout=300s
  local want have
  want=$(echo "$nodes" | wc -w)
  have=$(kubectl -n "$ns" get ds pullguard-node -o jsonpath='{.status.numberReady}')
  [[ "$have" == "$want" ]] || die "DaemonSet ready on $have of $want nodes"
}

say "3. install through the DaemonSet (enforce)"
kind load image-archive --name "$cluster" "$repo/dist/pullguard-image.tar"
policy enforce /etc/pullguard/cosign.pub >"$gen/policy.yaml"
kubectl apply -k "$here/e2e"
ready_everywhere
for node in $nodes; do
  docker exec "$node" ls /opt/containerd/image-verifier/bin/pullguard >/dev/null || die "$node: pullguard not in bin_dir"
  docker exec "$node" sh -c 'journalctl -u containerd --since "-5min" | grep -q "Falling back to local image pull mode"' &&
    die "$node: CRI pulls fall back to local pulls (unverified)"
done

run_pod() { # name image
  kubectl run "$1" --image="$2" --restart=Never --image-pull-policy=Always -- sleep 3600 >/dev/null
}
wait_running() {
  kubectl wait --for=jsonpath='{.status.phase}'=Running "pod/$1" --timeout=120s >/dev/null || {
    kubectl describe pod "$1"; die "pod $1 is not Running"; }
}
wait_pull_denied() {
  for _ in $(seq 60); do
    if kubectl describe pod "$1" | grep -q 'verifier pullguard rejected image'; then
      kubectl get pod "$1" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' | grep -Eq 'ErrImagePull|ImagePullBackOff' ||
        die "pod $1: pullguard denied, but the pod is not in ErrImagePull"
      kubectl describe pod "$1" | grep -m1 'pullguard rejected image'
      return 0
    fi
    sleep 2
  done
  kubectl describe pod "$1"; die "pod $1: no pullguard denial in its events"
}

say "4. signed pods run, the unsigned pod is denied"
run_pod signed-cosign "$img_cosign"
run_pod signed-notation "$img_notation"
run_pod unsigned "$img_unsigned"
wait_running signed-cosign
wait_running signed-notation
wait_pull_denied unsigned

say "5. audit mode: the unsigned image runs"
policy audit /etc/pullguard/cosign.pub >"$gen/policy.yaml"
kubectl apply -k "$here/e2e"
# kubelet refreshes ConfigMap volumes within about a minute; the agent swaps the policy when it sees it.
for node in $nodes; do
  for _ in $(seq 60); do docker exec "$node" grep -q 'mode: audit' /etc/pullguard/policy.yaml && break; sleep 3; done
  docker exec "$node" grep -q 'mode: audit' /etc/pullguard/policy.yaml || die "$node: the audit policy did not arrive"
done
run_pod unsigned-audit "$img_audit"
wait_running unsigned-audit

say "6. a broken policy push is refused; deleting the DaemonSet uninstalls"
good=$(docker exec "${nodes%%$'\n'*}" readlink /etc/pullguard/current)
policy enforce /etc/pullguard/not-in-the-configmap.pub >"$gen/policy.yaml"
kubectl apply -k "$here/e2e"
for _ in $(seq 60); do
  [[ "$(kubectl -n "$ns" get ds pullguard-node -o jsonpath='{.status.numberReady}')" == 0 ]] && break; sleep 3
done
[[ "$(kubectl -n "$ns" get ds pullguard-node -o jsonpath='{.status.numberReady}')" == 0 ]] || die "the broken policy did not make the agents unready"
[[ "$(docker exec "${nodes%%$'\n'*}" readlink /etc/pullguard/current)" == "$good" ]] || die "the broken policy reached a node"
kubectl -n "$ns" logs ds/pullguard-node | grep -m1 REFUSED
# The DaemonSet first, and alone: its pods' SIGTERM handler asks the API whether it is being deleted
# (deleting the namespace at the same time could revoke their token first; they would then stay installed).
kubectl -n "$ns" delete ds pullguard-node --wait=true --timeout=300s
kubectl -n "$ns" wait --for=delete pod -l app.kubernetes.io/component=node-agent --timeout=300s
kubectl -n "$ns" logs --tail=-1 -l app.kubernetes.io/component=node-agent 2>/dev/null || true
kubectl delete -k "$here/e2e" --ignore-not-found --wait=true --timeout=300s
for node in $nodes; do
  docker exec "$node" test ! -e /opt/containerd/image-verifier/bin/pullguard || die "$node: pullguard still in bin_dir"
  docker exec "$node" cmp /etc/containerd/config.toml /tmp/config.toml.before-pullguard || die "$node: config.toml not restored"
done
kubectl delete pod unsigned --wait=false >/dev/null
run_pod unsigned-after "$img_unsigned"
wait_running unsigned-after
say "7. cleanup"
