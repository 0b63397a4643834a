#!/bin/sh
# Build the vcsim test launcher from Debian's Go and govmomi sources
# (apt-get install golang-go golang-github-vmware-govmomi-dev) into
# <repo>/.cache/vcsim/vcsim-<sha256 of the .go sources, 12 chars>, and print
# that path. Does nothing but print the path when the binary already exists.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
cache="$repo/.cache"

# Hash the Go sources in a stable order (file names included).
hash=$(cd "$here" && LC_ALL=C ls *.go | LC_ALL=C sort | while read -r f; do
    printf '%s\n' "$f"
    cat "$f"
done | sha256sum | cut -c1-12)
bin="$cache/vcsim/vcsim-$hash"

if [ ! -x "$bin" ]; then
    command -v go >/dev/null 2>&1 || {
        echo "build.sh: 'go' not found; apt-get install golang-go golang-github-vmware-govmomi-dev" >&2
        exit 1
    }
    mkdir -p "$cache/vcsim" "$cache/go-build"
    tmp="$bin.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    (
        cd "$here"
        GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
            GOCACHE="$cache/go-build" CGO_ENABLED=0 \
            go build -o "$tmp" .
    ) >&2
    mv -f "$tmp" "$bin"
    trap - EXIT
    # Drop binaries built from older sources more than an hour ago (a
    # running one keeps its inode; a recent one may still be in use by path).
    find "$cache/vcsim" -maxdepth 1 -type f -name 'vcsim-*' ! -name "vcsim-$hash" \
        ! -name '*.tmp.*' -mmin +60 -exec rm -f {} + 2>/dev/null || true
fi
printf '%s\n' "$bin"
