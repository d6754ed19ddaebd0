#!/bin/sh
# README.md shows one literal `apt-get install -y ...` line; it must name the packages of the
# pkgs=( ... ) list in scripts/install-deps.sh, in the same order (the README is copied from it).
# usage: readme_deps.sh REPO_ROOT
set -u
root=$1
script=$(sed -n '/^pkgs=(/,/)/p' "$root/scripts/install-deps.sh" | sed 's/^pkgs=(//; s/)$//' |
    tr -s ' \n' '  ' | sed 's/^ *//; s/ *$//')
n=$(grep -c '^apt-get install -y ' "$root/README.md")
readme=$(sed -n 's/^apt-get install -y //p' "$root/README.md" | sed 's/ *$//')
if [ -z "$script" ]; then
    echo "FAIL: no pkgs=( ... ) list in scripts/install-deps.sh"
    exit 1
fi
if [ "$n" -ne 1 ] || [ "$readme" != "$script" ]; then
    echo "FAIL: README.md has $n apt-get install lines (want 1, with the script's packages):"
    echo "  README:          $readme"
    echo "  install-deps.sh: $script"
    exit 1
fi
echo "readme_deps: README.md installs the $(echo "$script" | wc -w) packages of install-deps.sh"
