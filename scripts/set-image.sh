#!/usr/bin/env bash
# Sets the image tag of deploy/kubernetes: the images: entry of a
# kustomization.yaml whose name is IMAGE gets newTag TAG. It edits only that
# entry's newTag line and fails when there is none, so a renamed image never
# leaves the manifests silently pointing at an old build.
# Usage: scripts/set-image.sh KUSTOMIZATION IMAGE TAG   (make k8s-image runs it)
set -euo pipefail
file=$1 image=$2 tag=$3
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "set-image: $tag is not a valid image tag" >&2; exit 2; }
out=$(awk -v image="$image" -v tag="$tag" '
	/^images:/ { inimages = 1; print; next }
	inimages && /^[^ #-]/ { inimages = 0 }
	inimages && /^ *- / { mine = 0 }
	inimages && /^ *-? *name:/ {
		name = $0
		sub(/^ *-? *name: */, "", name)
		gsub(/["\047 ]/, "", name)
		if (name == image) mine = 1
	}
	mine && /^ +newTag:/ { sub(/newTag:.*/, "newTag: \"" tag "\""); done = 1; mine = 0 }
	{ print }
	END { if (!done) exit 3 }
' "$file") || { echo "set-image: $file has no images: entry named $image with a newTag line" >&2; exit 1; }
printf '%s\n' "$out" >"$file"
echo "set-image: $file: $image:$tag"
