#!/usr/bin/env bash
# React and ReactDOM for the browser tests only (the product's client has no dependency): the
# UMD builds of react@18.3.1 and react-dom@18.3.1 from the npm registry, checked against the
# sums below. The files are committed; this script re-fetches them (it needs npm and the registry).
set -euo pipefail
cd "$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
( cd "$work" && npm pack --silent react@18.3.1 react-dom@18.3.1 >/dev/null
  tar xzf react-18.3.1.tgz package/umd/react.production.min.js package/LICENSE
  tar xzf react-dom-18.3.1.tgz package/umd/react-dom.production.min.js )
cp "$work/package/umd/react.production.min.js" "$work/package/umd/react-dom.production.min.js" .
cp "$work/package/LICENSE" LICENSE.react
sha256sum -c <<'SUMS'
d949f1c3687aedadcedac85261865f29b17cd273997e7f6b2bfc53b2f9d4c4dd  react.production.min.js
35f4f974f4b2bcd44da73963347f8952e341f83909e4498227d4e26b98f66f0d  react-dom.production.min.js
SUMS
