import type { Tensor } from '@bagua/core';
import type { CommBuffer, ProcessGroup } from '@bagua/comm';

/**
 * A tensor as a collective's buffer, through its DLPack-style export (no copy):
 * the host array itself on the CPU; on a device, its address and stream (a group
 * that moves device memory uses them; host-only groups stage through toHost/fromHost).
 * `staged`, if given, sees the host data a staging group writes back (fromHost),
 * so a caller can read a device tensor's new contents with no further download.
 */
export function commBuffer(t: Tensor, staged?: (src: Float32Array) => void): CommBuffer {
  const e = t.dlpack();
  if (e.dtype !== 'float32') throw new Error(`commBuffer: expected a float32 tensor, got ${e.dtype}`);
  if (e.host) return e.host as Float32Array;
  return {
    device: String(e.device), dtype: 'float32', length: t.numel, ptr: e.ptr, stream: e.stream,
    toHost: () => e.toHost() as Float32Array,
    fromHost: (src) => {
      if (!(src instanceof Float32Array)) throw new Error('commBuffer: a float32 tensor takes float32 data');
      e.fromHost(src);
      staged?.(src);
    },
  };
}

/** Whether the group moves this tensor's device memory itself (no host round trip, so no host-side checks for free). */
export function movesDeviceMemory(group: ProcessGroup, t: Tensor): boolean {
  return t.device.type !== 'cpu' && group.supports(t.device);
}
