/* gpuwire data-plane worker, engine layer (native/worker/engine/): the reader
 * of the client's requests, the scheduler of per-thread jobs and the
 * dispatcher naming the handlers. Entry points for the worker program
 * (native/worker/main.c) and the fuzz harness (native/fuzz/), which serves
 * session after session in one process. */
#ifndef GW_WORKER_ENGINE_H
#define GW_WORKER_ENGINE_H

#include <stdint.h>

/* Loads the driver and puts the worker's wrappers in place; NULL or why not (init.c). */
const char *gw_worker_init(const char *drv, unsigned long long mem_cap);
/* Serves one session on an already connected socket (after HELLO_OK) until it
 * ends: 0 the client left, 3 a malformed request or a lost connection, 4 out
 * of memory (reader.c). */
int gw_worker_serve(int sock);
/* Lanes' host-to-device data frames are read straight into jobs (gw_lanes_start's allocator; scheduler.c). */
void *gw_lane_job_alloc(uint32_t len, uint8_t **bytes);
void gw_job_free(void *j); /* gw_lanes_start's release: a data frame nobody took */
/* After a session that left a thread inside the driver, waits for it: for a
 * process that serves again (the fuzz harness); the worker program exits. */
void gw_worker_join_left_threads(void);

#endif
