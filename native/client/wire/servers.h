/* Several servers in one client (GPUWIRE_SERVER=a:7750,b:7751;
 * docs/multi-gpu.md "GPUs of several servers"). Server 0 is the session the
 * rest of the wire layer serves (batching, lanes, the reply reader); every
 * further server has a link of its own (servers.c): one connection, its
 * handshake, and a plain ordered transport. The devices of all of them make
 * one list, server 0's first.
 *
 * A request goes to one server, its route: the server of the device
 * ordinal or handles among its arguments (gw_put_device, gw_put_handle),
 * else of the calling thread's current context. Ids the client names carry
 * their server's index in bits 52..55 (server 0: none); ids a worker names
 * are unique across workers (each counts from a random start) and the
 * client notes whose each is. A handle of one server is never sent to
 * another: a request whose arguments name two servers is refused. With one server (gw_servers_n == 1) every function here is a
 * single comparison away from what the wire layer did before. */
#ifndef GW_CLIENT_WIRE_SERVERS_H
#define GW_CLIENT_WIRE_SERVERS_H

#include <cuda.h>
#include <stdint.h>

#include "../../common/wire.h"
#include "../diag/diag.h"

#define GW_SERVERS_MAX 8
#define GW_ROUTE_SHIFT 52
#define GW_ROUTE_MASK (0xfull << GW_ROUTE_SHIFT)
#define GW_ROUTE_ALL 15 /* a handle that exists on every server under one id (libraries, their kernels) */

typedef struct gw_req gw_req;
typedef struct gw_rep gw_rep;

/* How many servers this process uses (1 unless GPUWIRE_SERVER lists more);
 * set once, before any request. */
GW_HIDDEN extern int gw_servers_n;

/* ---- GPUWIRE_SERVER's list ---- */
/* Entry i (0-based) of a comma-separated list into out; the number of
 * entries, or -1 if an entry is empty or there are more than GW_SERVERS_MAX. */
GW_HIDDEN int gw_servers_entry(const char *list, int i, char *out, size_t cap);

/* ---- sessions (servers.c): the others, once server 0's is open ---- */
GW_HIDDEN CUresult gw_servers_connect_rest(const char *list);
GW_HIDDEN void gw_servers_after_fork(void);
GW_HIDDEN const gw_hello_ok *gw_servers_info(int k);

/* ---- each server's handshake and device table (handshake.c) ---- */
GW_HIDDEN CUresult gw_handshake_with(int fd, const char *server, gw_hello_ok *info, int k);
GW_HIDDEN const gw_device_info *gw_hello_device(int k, int i);
GW_HIDDEN const int32_t *gw_hello_device_attrs(int k, int i);
GW_HIDDEN int gw_hello_device_count(int k); /* -1: HELLO_OK carried no table */

/* ---- the combined device list (servers.c): what gw_handshake_device and
 * friends answer with several servers; handle = the client's ordinal ---- */
GW_HIDDEN const gw_device_info *gw_servers_device(int ordinal);
GW_HIDDEN const int32_t *gw_servers_device_attrs(int ordinal);
GW_HIDDEN int gw_servers_device_count(void);

/* ---- the combined device list ---- */
/* The server of the client's device ordinal dev and its ordinal there
 * (*local), or -1 if dev names no device. */
GW_HIDDEN int gw_device_server(int dev, int *local);
GW_HIDDEN int gw_device_of_server(int k, int local); /* the client's ordinal of server k's device, -1 if hidden */
GW_HIDDEN int gw_pushed_server(void); /* in a pushed frame's handler: the server that sent it */

/* ---- routing ---- */
/* What the layer above says the calling thread's route is (the server of
 * its current context); registered once (state/contexts.c). */
GW_HIDDEN void gw_set_route_fn(int (*fn)(void));
GW_HIDDEN int gw_route_now(void); /* 0 with one server */
/* The calling thread's requests go to server k until gw_route_leave(the
 * value returned) (a copy whose memory is on k); k < 0: no change. */
GW_HIDDEN int gw_route_enter(int k);
GW_HIDDEN void gw_route_leave(int prev);
GW_HIDDEN void gw_req_route(gw_req *q, int k);      /* q goes to server k (joined with its arguments') */
GW_HIDDEN int gw_req_on_device(gw_req *q, int dev); /* q goes to dev's server: dev's ordinal there */
GW_HIDDEN void gw_put_handle(gw_req *q, uint64_t h);
GW_HIDDEN void gw_put_device(gw_req *q, int64_t dev);
GW_HIDDEN void gw_put_address(gw_req *q, uint64_t addr); /* a device address: its memory's server */
/* Which server an address's memory is on, -1 if unknown; registered once (state/server_memory.c). */
GW_HIDDEN void gw_set_address_fn(int (*fn)(uint64_t addr));
GW_HIDDEN void gw_put_device_on(gw_req *q, int64_t dev, int *server); /* and which server it is on */
GW_HIDDEN uint64_t gw_handle_on(uint64_t h, int k); /* a handle from server k, as the client keeps it (noted) */
GW_HIDDEN int gw_handle_server(uint64_t h);         /* the server a handle belongs to; -1: none or every one */
GW_HIDDEN int gw_handle_everywhere(uint64_t h);     /* made on every server (GW_ROUTE_ALL) */
/* CUmemGenericAllocationHandle values: noted as server k's when a reply brings
 * one; a request naming one goes there (-1: not known, the thread's route) */
GW_HIDDEN uint64_t gw_allocation_handle_on(uint64_t h, int k);
GW_HIDDEN int gw_allocation_handle_server(uint64_t h);
GW_HIDDEN void gw_put_allocation_handle(gw_req *q, uint64_t h);
GW_HIDDEN void gw_pin_next_handle_id(uint64_t id);  /* the calling thread's next gw_new_handle_id returns id */
/* The route of a finished request (several servers only): its arguments'
 * server, else the thread's; -1 if its arguments name two servers. */
GW_HIDDEN int gw_route_of(const gw_req *q);
GW_HIDDEN int gw_handle_fits(uint64_t h, int k);  /* h names no server, or server k (k < 0: any) */
GW_HIDDEN CUresult gw_route_mixed(unsigned op);   /* the line for a call naming two servers; INVALID_HANDLE */

/* ---- the transport of servers 1.. (servers.c) ---- */
GW_HIDDEN CUresult gw_link_call(int k, gw_req *q, gw_rep *r);
GW_HIDDEN CUresult gw_link_post(int k, gw_req *q, const void *tail, size_t tail_len);
GW_HIDDEN CUresult gw_link_burst_begin(int k, unsigned op);
GW_HIDDEN CUresult gw_link_burst_queue(gw_req *q, uint32_t *seq);
GW_HIDDEN CUresult gw_link_burst_reply(uint32_t seq, gw_rep *r);
GW_HIDDEN void gw_link_burst_end(void);
GW_HIDDEN int gw_link_bursting(void); /* the calling thread is in a link's burst */

#endif
