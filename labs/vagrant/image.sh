#!/usr/bin/env bash
# The agent DaemonSet's image, built on each node from the repository's Dockerfile and the
# host's wheel, straight into containerd's k8s.io namespace: no registry, nothing pulled for it.
set -euo pipefail
: "${PODPATH_VERSION:?}"
image=ghcr.io/podpath/podpath:$PODPATH_VERSION
cd /vagrant
if [ ! -f Dockerfile ]; then
  echo "image: no Dockerfile in this checkout (it comes with the agent DaemonSet, deploy/)" >&2
  exit 1
fi
buildah bud --quiet -t "$image" . >/dev/null
archive=$(mktemp --suffix .tar)
trap 'rm -f "$archive"' EXIT
rm -f "$archive"
buildah push --quiet "$image" "docker-archive:$archive:$image"
ctr -n k8s.io images import "$archive" >/dev/null
echo "image: $image is in containerd on $(hostname)"
