#!/bin/sh
# A virtual user in POSIX shell: any executable that speaks oct's JSON-lines worker protocol
# (docs/process-protocol.md) can be a script. One line in, one line out.
n=0
now() { date +%s%N; }
while IFS= read -r line; do
  case "$line" in
    *'"check"'*|*'"init"'*)
      echo '{"ok": true}' ;;
    *'"iteration"'*)
      n=$((n + 1))
      start=$(now)
      # The "transaction": list a folder and count its entries.
      count=$(ls / | wc -l)
      mid=$(now)
      sleep 0.01
      end=$(now)
      err=""
      if [ $((n % 10)) -eq 0 ]; then err="every tenth iteration fails (#$n)"; fi
      awk -v s="$start" -v m="$mid" -v e="$end" -v err="$err" -v c="$count" 'BEGIN {
        printf "{\"scriptrun_time\": %.6f, \"error\": \"%s\", \"custom_timers\": {\"list\": %.6f, \"sleep\": %.6f}}\n",
          (e - s) / 1e9, err, (m - s) / 1e9, (e - m) / 1e9
      }' ;;
  esac
done
