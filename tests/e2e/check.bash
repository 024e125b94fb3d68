# check.bash — helpers the end-to-end scripts source after creating $tmp: fail, check.
fails=0
fail() { echo "FAIL $*"; fails=$((fails+1)); }
# check NAME STATUS EXPECTED_STDERR_LINE CMD... — exit status and the exact last stderr line
# (an empty EXPECTED_STDERR_LINE checks the status only)
check() {
  local name="$1" want="$2" line="$3"; shift 3
  timeout 30 "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" -ne "$want" ]; then fail "$name: exit $rc, expected $want"; sed 's/^/  | /' "$tmp/err" | head -5; return; fi
  if [ -n "$line" ] && [ "$(tail -n 1 "$tmp/err")" != "$line" ]; then
    fail "$name: stderr"; echo "  expected: $line"; sed 's/^/  | /' "$tmp/err" | head -5; return
  fi
  echo "ok   $name"
}
