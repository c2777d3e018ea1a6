import type { Tensor } from '@bagua/core';
import type { CommBuffer, ProcessGroup } from '@bagua/comm';

/**
 * A tensor's storage as a collective's buffer, without copies: the host array
 * itself on the CPU; on a device, its address and stream (NCCL uses them
 * directly, CPU groups stage through toHost/fromHost).
 */
export function commBuffer(t: Tensor): CommBuffer {
  const s = t.storage('commBuffer');
  if (s.dtype !== 'float32') throw new Error(`commBuffer: expected a float32 tensor, got ${s.dtype}`);
  const host = s.backend.hostView?.(s.handle);
  if (host) return host as Float32Array;
  const info = s.backend.bufferInfo?.(s.handle);
  if (!info) throw new Error(`commBuffer: the ${s.device.type} backend exposes neither host nor device memory`);
  return {
    device: String(s.device), dtype: 'float32', length: t.numel, ptr: info.ptr, stream: info.stream,
    toHost: () => t.toArray() as Float32Array,
    fromHost: (src) => {
      if (!(src instanceof Float32Array)) throw new Error('commBuffer: a float32 tensor takes float32 data');
      s.backend.upload(s.handle, src);
    },
  };
}

/** Whether the group moves device memory itself (no host round trip, so no host-side checks for free). */
export function movesDeviceMemory(group: ProcessGroup, t: Tensor): boolean {
  return group.backend === 'nccl' && t.device.type !== 'cpu';
}
