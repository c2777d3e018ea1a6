/* bagua_cuda_runtime.h: CUDA-only functions of libbagua_kernels_cuda.so.
 *
 * Same conventions as bagua_kernels.h: the int returned is a bk_status (BK_OK = 0),
 * the message of a failure in bk_last_error() (thread-local). In the CUDA library every
 * float / int32 data pointer of bagua_kernels.h is a device pointer, while
 * shape and stride arrays and geometry structs (int64_t *shape, bk_conv2d_geom *geom, ...) are
 * host pointers, read before the call returns. `stream` is a cudaStream_t;
 * NULL means the legacy default stream, bk_cuda_stream() gives the library's
 * own stream for a device (the one the scratch memory is ordered on).
 * Kernels run on the calling thread's current device (bk_cuda_set_device).
 */
#ifndef BAGUA_CUDA_RUNTIME_H
#define BAGUA_CUDA_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef BK_API
#define BK_API __attribute__((visibility("default")))
#endif

/* Number of devices. Fails, with the CUDA runtime's reason (e.g. "CUDA driver
 * version is insufficient", "no CUDA-capable device is detected"), when no
 * driver or no device is present: the probe to call first. */
BK_API int bk_cuda_device_count(int32_t *count);
/* Driver and runtime versions as 1000 * major + 10 * minor (0 when no driver). */
BK_API int bk_cuda_versions(int32_t *driver, int32_t *runtime);
/* name (NUL-terminated, truncated to name_len), compute capability, memory, SMs. */
BK_API int bk_cuda_device_info(int32_t device, char *name, int32_t name_len, int32_t *cc_major,
                               int32_t *cc_minor, int64_t *total_bytes, int32_t *sm_count);
BK_API int bk_cuda_set_device(int32_t device);
BK_API int bk_cuda_get_device(int32_t *device);

/* Caching allocator: blocks are rounded to size buckets and kept on per-device
 * free lists; cudaMalloc happens only when a bucket is empty (and once more
 * after emptying the cache when it fails). Freed blocks are reused in stream
 * order on the device's stream. n == 0 gives a NULL pointer. */
BK_API int bk_cuda_malloc(void **ptr, int64_t nbytes, int32_t device);
BK_API int bk_cuda_free(void *ptr);
/* Returns the cached (unused) blocks of `device` (-1: all devices) to the driver. */
BK_API int bk_cuda_empty_cache(int32_t device);
/* Bytes handed out, and bytes held from the driver (in use + cached). */
BK_API int bk_cuda_memory_stats(int32_t device, int64_t *allocated, int64_t *reserved, int64_t *system_allocs);

/* The library's stream for `device` (created on first use, non-blocking). */
BK_API int bk_cuda_stream(int32_t device, void **stream);
/* host -> device: queued on `stream` (the host buffer may be reused on return). */
BK_API int bk_cuda_memcpy_h2d(void *dst, const void *src, int64_t nbytes, void *stream);
/* device -> host: queued on `stream`, then waits for it; reports a kernel's
 * recorded input error (e.g. an nll target out of range) here. */
BK_API int bk_cuda_memcpy_d2h(void *dst, const void *src, int64_t nbytes, void *stream);
BK_API int bk_cuda_memcpy_d2d(void *dst, const void *src, int64_t nbytes, void *stream);
/* Waits for `stream` (NULL: the whole current device); reports recorded errors too. */
BK_API int bk_cuda_synchronize(void *stream);

/* Which cuBLAS was loaded (path), loading it if needed; the error lists the
 * paths tried. Called implicitly by the first gemm / convolution. */
BK_API int bk_cuda_cublas_info(char *path, int32_t path_len);

/* Events for timing (benchmarks): create, record on a stream, elapsed ms. */
BK_API int bk_cuda_event_create(void **event);
BK_API int bk_cuda_event_record(void *event, void *stream);
BK_API int bk_cuda_event_elapsed(float *ms, void *start, void *end); /* waits for `end` */
BK_API int bk_cuda_event_destroy(void *event);

#ifdef __cplusplus
}
#endif
#endif
