#!/bin/bash
# Record `uv run hindsight-demo --interactive` as a person sees it: tmux types each line once the demo is
# waiting for input, and the whole screen is saved (default docs/demo-session.txt).
#     bash bench/record_demo_session.sh [OUTPUT]
set -u
out="${1:-docs/demo-session.txt}"
S="demo-session-$$"
cd "$(dirname "$0")/.."
tmux new-session -d -s "$S" -x 110 -y 50 "env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u HINDSIGHT_API_URL bash --norc"
tmux set-option -t "$S" history-limit 5000 >/dev/null
screen() { tmux capture-pane -p -J -S -5000 -t "$S" | sed -e "s/[[:space:]]*$//"; }
prompts() { screen | grep -c '^you>'; }
waiting() { [ "$(screen | grep -v '^[[:space:]]*$' | tail -n 1)" = "you>" ]; }
wait_prompt() { # N: wait until N prompts were shown and the demo waits for input
  for _ in $(seq 1 600); do
    if [ "$(prompts)" -ge "$1" ] && waiting; then return 0; fi
    sleep 0.5
  done
  echo "the demo did not ask for input (prompt $1)" >&2; return 1
}
type_line() { tmux send-keys -t "$S" -l "$1"; sleep 0.2; tmux send-keys -t "$S" Enter; }
tmux send-keys -t "$S" "python3 -m uv run hindsight-demo --interactive" Enter
wait_prompt 1
n=1
for line in \
  "My sister's name is Ines and she plays the cello." \
  "I work as a nurse at the Santa Maria hospital." \
  "/new" \
  "What instrument does my sister play?" \
  "What is my job?" \
  "/memory"; do
  type_line "$line"
  n=$((n + 1))
  wait_prompt "$n"
done
type_line "/quit"
for _ in $(seq 1 120); do screen | grep -q "Local Hindsight server stopped." && break; sleep 0.5; done
screen | sed -e 's/[[:space:]]*$//' > "$out"
tmux kill-session -t "$S"
echo "saved $out" >&2
