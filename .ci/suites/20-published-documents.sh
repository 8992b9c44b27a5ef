#!/usr/bin/env bash
# The published documents against the ecosystem's validators (@asyncapi/parser,
# schemathesis), with the binary the tests built.
set -euo pipefail
tools/validate-docs.sh
