# devrun-e2e.sh, sourced (from the repository root) by gpu-e2e.sh, gpu-faults.sh and
# gpu-multi.sh: the packed runtime libs of .devrun/e2e/ (scripts/gpu-e2e.sh --pack) go on
# LD_LIBRARY_PATH when they came along, and `devrun_e2e_bin BINARY` prints the folder to run
# the binaries from: .devrun/e2e/bin when it holds BINARY, else build/bin.
[ ! -d .devrun/e2e/rtlibs ] ||
  export LD_LIBRARY_PATH=$PWD/.devrun/e2e/rtlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
devrun_e2e_bin() {
  if [ -x ".devrun/e2e/bin/$1" ]; then echo .devrun/e2e/bin; else echo build/bin; fi
}
