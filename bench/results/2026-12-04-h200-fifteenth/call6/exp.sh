#!/usr/bin/env bash
# Fifteenth session, call 6: the system end to end on the GPU (HEAD 1397335): here
# `bash scripts/gpu-e2e.sh --pack`, then on the device (carry .devrun/e2e):
NOSA_E2E_PARALLEL=8 timeout 290 bash scripts/gpu-e2e.sh tiny 1b 2>&1 | tail -25
