#!/usr/bin/env bash
# Runs every Parley test. Installs and starts what the tests need, then runs `dotnet test` over the solution
# and prints "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")"

results=TestResults
rm -rf "$results"
dotnet test Parley.slnx --logger trx --results-directory "$results" "$@"
rc=$?

passed=0; failed=0; skipped=0
shopt -s nullglob
for trx in "$results"/*.trx; do
  counters=$(grep -o '<Counters [^>]*>' "$trx")
  get() { sed -E "s/.* $1=\"([0-9]+)\".*/\1/" <<<"$counters"; }
  passed=$((passed + $(get passed)))
  failed=$((failed + $(get failed)))
  skipped=$((skipped + $(get total) - $(get executed)))
done
echo "$passed passed, $failed failed, $skipped skipped"
exit $rc
