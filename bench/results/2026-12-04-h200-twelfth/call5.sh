#!/usr/bin/env bash
set -u
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
o=$OUT/c5; mkdir -p $o; SECONDS=0
for b in bin base/bin bin; do echo "== .devrun/$b"; timeout 60 .devrun/$b/bench_cuda_select 1b 131072 16,64,256; done > $o/select.txt 2>&1
echo "select ${SECONDS}s" >> $o/times.txt
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 200 $cs --tool memcheck --error-exitcode 9 .devrun/bin/test_cuda_kernels > $o/kernels.memcheck.log 2>&1; echo "kernels memcheck rc=$? ${SECONDS}s" >> $o/times.txt
NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=30 timeout 200 $cs --tool memcheck --error-exitcode 9 .devrun/bin/test_cuda_backend > $o/backend.memcheck.log 2>&1; echo "backend memcheck rc=$? ${SECONDS}s" >> $o/times.txt
tar -C $o -czf $OUT/c5.tgz .
cat $o/select.txt $o/times.txt; tail -3 $o/kernels.memcheck.log $o/backend.memcheck.log
