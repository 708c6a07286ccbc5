#!/usr/bin/env bash
# The long fuzz run of the backbone's decode-and-preprocess path (the same Preprocessor code the service runs).
# The default test suite runs 400 seeded cases; this runs many more, with any seed:
#   tests/fuzz/run.sh                 # 20000 cases, seed 20261128
#   tests/fuzz/run.sh 100000 42       # 100000 cases, seed 42
# A failing case is saved to /tmp/graft-fuzz-<seed>-<case>.bin and named in the failure message.
set -euo pipefail
cases="${1:-20000}"
seed="${2:-20261128}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dotnet build "$root/tests/Reliability.Tests/Reliability.Tests.csproj" -v q -nologo
GRAFT_FUZZ_CASES="$cases" GRAFT_FUZZ_SEED="$seed" dotnet test "$root/tests/Reliability.Tests/Reliability.Tests.csproj" \
  --no-build --filter "FullyQualifiedName~FuzzTests" --logger "console;verbosity=detailed"
