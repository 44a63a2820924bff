#!/usr/bin/env bash
# Static checks that need no build: formatting against .clang-format, and the banned-function
# list of STYLE.md (unbounded or unchecked C library calls) in the project's own sources.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fail=0
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find common services tools tests -name '*.[ch]')
if ! clang-format --dry-run -Werror "${files[@]}" 2>/tmp/pl-lint-format.$$; then
  head -n 20 /tmp/pl-lint-format.$$ >&2
  echo "lint: formatting differs from .clang-format (run clang-format -i)" >&2
  fail=1
fi
rm -f /tmp/pl-lint-format.$$
if grep -nE '\b(sprintf|vsprintf|strcpy|strcat|gets|atoi|atol|atoll)\s*\(' "${files[@]}" \
     | grep -vE '\b(snprintf|vsnprintf)\s*\(' ; then
  echo "lint: banned function used (see STYLE.md: snprintf, bounded copies, strtol)" >&2
  fail=1
fi
if [ $fail -eq 0 ]; then echo "lint: 2 passed, 0 failed"; else echo "lint: failed"; fi
exit $fail
