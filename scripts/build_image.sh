#!/usr/bin/env bash
# Build the pipeline image and push it: scripts/build_image.sh REGISTRY/NAME:TAG [BASE_IMAGE]
# Needs Docker (not available on the development machines); see docs/deploy.md.
set -euo pipefail
image="${1:?usage: scripts/build_image.sh REGISTRY/NAME:TAG [BASE_IMAGE]}"
cd "$(dirname "$0")/.."
args=()
if [[ $# -ge 2 ]]; then args+=(--build-arg "BASE_IMAGE=$2"); fi
docker build "${args[@]}" -t "$image" .
docker run --rm "$image" --help >/dev/null   # the CLI imports in the image
docker push "$image"
echo "pushed $image; compile with: python -m pipeline compile-kfp --image $image ..."
