/* bad_input.h: the fault harness's bad-input fault (docs/FAULTS.md): while the node's jobs
 * decode, every kind of bad frame of issue 7 sent to the coordinator's client link, its
 * worker link (an unregistered peer) and the kv-host, each checked for its Error reply. */
#ifndef NOSA_FAULT_BAD_INPUT_H
#define NOSA_FAULT_BAD_INPUT_H

#include <stdint.h>

#include "node_harness.h"

/* Sends them all; live_jobs[0..n) are ids of jobs running now, which the stranger's tokens
 * and ends name (they must be refused and change nothing). Prints each reply that is missing
 * or wrong; returns how many, and how many were checked in *checked. */
int bad_input_send(const struct nh_node *node, const uint64_t *live_jobs, int n, int *checked);

#endif
