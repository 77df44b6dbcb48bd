#!/bin/bash
# The device tool sends the tracked files too, and .gpu/ plus the whole tree exceed its 64 MiB: for the call,
# untrack what chapter 4's run never reads (other chapters' results and notebooks, the book) and ignore it.
#   bash tools/gpu/hide.sh hide     before the call
#   bash tools/gpu/hide.sh restore  right after it (nothing on disk changes either way)
set -e
cd "$(git rev-parse --show-toplevel)"
LIST=.gpu/hidden.txt
case "$1" in
  hide)
    git ls-files results notebooks book | grep -v -e '^results/art/' -e 'run.json$' -e '04_neural_art.ipynb$' > $LIST
    xargs -a $LIST git rm -q --cached
    sed 's|^|/|' $LIST >> .git/info/exclude
    echo "hid $(wc -l < $LIST) files; what travels:"
    (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 stat -c %s | awk '{s+=$1} END {printf "  tree %.1f MiB\n", s/2^20}'
    du -sb .gpu | awk '{printf "  .gpu %.1f MiB\n", $1/2^20}' ;;
  restore)
    xargs -a $LIST git reset -q --
    grep -v -x -F -f <(sed 's|^|/|' $LIST) .git/info/exclude > .git/info/exclude.new || true
    mv .git/info/exclude.new .git/info/exclude
    git status --short | head ;;
  *) echo "usage: hide.sh hide|restore"; exit 2 ;;
esac
