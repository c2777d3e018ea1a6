/*
 * bagua_gloo: a small C ABI over Gloo (TCP transport) for @bagua/comm.
 *
 * Plain types only; no C++ exception ever crosses this boundary. Every
 * function that can fail returns a status code (BAGUA_GLOO_OK on success) and
 * leaves a message in a thread-local buffer read by bagua_gloo_last_error().
 * Context creation, which callers run on a worker thread (koffi .async),
 * writes its message into a caller-supplied buffer instead.
 *
 * A failure may also name the peer ranks at fault (group ranks: peers that
 * never came to the rendezvous, or whose connection broke):
 * bagua_gloo_last_error_ranks() returns them for the thread's last failed
 * call, context creation fills the caller's err_ranks.
 *
 * Sources (native/gloo/): c_api.cc (this ABI), rendezvous.cc (joining a
 * group), store_adapter.cc (gloo's Store over store_client.cc), small_path.cc
 * (payloads on the synchronous mesh), async.cc (the communication thread of
 * started collectives), header.cc (the descriptor exchange),
 * large_path.cc (gloo's algorithms), reduce.h,
 * attribution.cc (peers' addresses), blame.cc (which peer a failure is
 * about: the verdicts failing ranks send each other), errors.cc (last error).
 */
#ifndef BAGUA_GLOO_H_
#define BAGUA_GLOO_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BAGUA_GLOO_ABI_VERSION 4

enum bagua_gloo_status {
  BAGUA_GLOO_OK = 0,
  BAGUA_GLOO_ERR_TIMEOUT = 1,  /* a peer or the store did not answer in time */
  BAGUA_GLOO_ERR_IO = 2,       /* connection lost, refused, reset */
  BAGUA_GLOO_ERR_INVALID = 3,  /* bad argument, closed context */
  BAGUA_GLOO_ERR_INTERNAL = 4, /* a gloo assertion or anything else */
};

enum bagua_gloo_dtype {
  BAGUA_GLOO_FLOAT32 = 0,
  BAGUA_GLOO_FLOAT64 = 1,
  BAGUA_GLOO_INT32 = 2,
  BAGUA_GLOO_INT64 = 3,
  BAGUA_GLOO_UINT8 = 4,
};

enum bagua_gloo_op {
  BAGUA_GLOO_SUM = 0,
  BAGUA_GLOO_AVG = 1, /* sum, then divided by the group size (integers: truncated) */
  BAGUA_GLOO_MAX = 2,
  BAGUA_GLOO_MIN = 3,
  BAGUA_GLOO_PRODUCT = 4,
};

typedef struct bagua_gloo_context bagua_gloo_context;

#define BAGUA_GLOO_API __attribute__((visibility("default")))

BAGUA_GLOO_API int bagua_gloo_abi_version(void);

/* The message of the last failed call on this thread ("" if none). */
BAGUA_GLOO_API const char* bagua_gloo_last_error(void);

/*
 * The group ranks at fault in the last failed call on this thread (none when
 * the failure names no peer): writes up to `cap` of them to `ranks` and
 * returns how many there are (call again with a larger array if that is
 * more than cap).
 */
BAGUA_GLOO_API int bagua_gloo_last_error_ranks(int32_t* ranks, int cap);

/*
 * Joins a group of `size` ranks: connects to the rendezvous store at
 * store_host:store_port (AUTH with `token` first when it is non-empty), and
 * builds full meshes of TCP pairs whose addresses are exchanged under
 * "<prefix>/..." keys. Binds to `iface` when non-empty, else to `hostname`
 * when non-empty, else to the local address of the connection to the store
 * (127.0.0.1 when the store is on loopback). Blocks up to timeout_ms (which
 * is also the default timeout of collectives).
 *
 * Every collective of a group of more than one rank first exchanges its
 * descriptor (kind, dtype, count, root, reduction, the group's call number)
 * with every peer over a second mesh in gloo's synchronous mode (blocking
 * reads and writes on the calling thread), so ranks that make different
 * calls fail at once with BAGUA_GLOO_ERR_INVALID naming both calls (the
 * group stays usable); this exchange waits up to timeout_ms whatever the
 * call's own timeout. Collectives whose per-rank payload is at most
 * small_bytes (an all-reduce also needs payload x size <= 4 x small_bytes:
 * it all-gathers whole buffers and reduces them in rank order) and whose
 * timeout is the creation timeout move their payload over that mesh too
 * (up to 32 KiB in the descriptor's own message); everything else uses
 * gloo's asynchronous algorithms. Every rank must pass the same small_bytes
 * (0: every payload takes gloo's algorithms).
 *
 * Returns NULL on failure, with the message in err (NUL-terminated,
 * truncated to err_cap) and the group ranks that never came in err_ranks (up
 * to err_ranks_cap of them; *err_nranks says how many there are, 0 when the
 * failure names none). Creation runs on a worker thread, so these are the
 * caller's buffers rather than the thread's last error.
 */
BAGUA_GLOO_API bagua_gloo_context* bagua_gloo_context_create(
    int rank, int size, const char* store_host, int store_port,
    const char* token, const char* prefix, int timeout_ms, const char* iface,
    const char* hostname, int64_t small_bytes, char* err, int err_cap,
    int32_t* err_ranks, int err_ranks_cap, int32_t* err_nranks);

/* Joins the communication thread first: the running call finishes (within its timeouts), queued ones fail. */
BAGUA_GLOO_API void bagua_gloo_context_destroy(bagua_gloo_context* ctx);

BAGUA_GLOO_API int bagua_gloo_rank(const bagua_gloo_context* ctx);
BAGUA_GLOO_API int bagua_gloo_size(const bagua_gloo_context* ctx);

/* In place over `count` elements. timeout_ms <= 0: the context default. */
BAGUA_GLOO_API int bagua_gloo_allreduce(bagua_gloo_context* ctx, void* buf,
                                        int64_t count, int dtype, int op,
                                        int timeout_ms);

/* out (size * count elements) = every rank's `in` (count elements), in rank order. */
BAGUA_GLOO_API int bagua_gloo_allgather(bagua_gloo_context* ctx, void* out,
                                        const void* in, int64_t count,
                                        int dtype, int timeout_ms);

/* In place: buf = root's buf. */
BAGUA_GLOO_API int bagua_gloo_broadcast(bagua_gloo_context* ctx, void* buf,
                                        int64_t count, int dtype, int root,
                                        int timeout_ms);

BAGUA_GLOO_API int bagua_gloo_barrier(bagua_gloo_context* ctx, int timeout_ms);

/*
 * Asynchronous all-reduce (ABI 4): queues the call on the context's
 * communication thread (one per context, started with the first call) and
 * returns at once with *ticket set. Started calls run one at a time, in the
 * order started, and every synchronous call above first waits for them, so
 * the group's calls keep one order on every rank. `buf` stays the caller's
 * and must not be touched or freed until bagua_gloo_wait returned for the
 * ticket (or the context was destroyed). Argument errors return at once;
 * everything else is reported by bagua_gloo_wait.
 */
BAGUA_GLOO_API int bagua_gloo_allreduce_start(bagua_gloo_context* ctx, void* buf,
                                              int64_t count, int dtype, int op,
                                              int timeout_ms, int64_t* ticket);

/* 1 when the started call has finished, 0 while it is queued or running, -1 for an unknown ticket. */
BAGUA_GLOO_API int bagua_gloo_test(bagua_gloo_context* ctx, int64_t ticket);

/*
 * Blocks until the started call finishes (up to timeout_ms; <= 0: twice the
 * group's timeout and 5 s) and returns its status, its message and the peers
 * at fault becoming this thread's last error. A ticket can be waited for
 * once. BAGUA_GLOO_ERR_TIMEOUT when the wait expires: the call still owns
 * its buffer then (destroy runs it out).
 */
BAGUA_GLOO_API int bagua_gloo_wait(bagua_gloo_context* ctx, int64_t ticket, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* BAGUA_GLOO_H_ */
