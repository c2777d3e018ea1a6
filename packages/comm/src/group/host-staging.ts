/**
 * Host staging, the layer every host-only backend (threads, gloo) gets: its
 * collectives take typed arrays only, and this class copies device buffers
 * to the host (toHost) before and back (fromHost) after. Such a backend
 * supports the cpu alone: `supports('cuda:0')` is false, so callers know a
 * device buffer costs two host copies here.
 */
import type { CommBuffer, CommDevice, HostBuffer, ReduceOp } from '../process-group.js';
import { allocHost, isDeviceBuffer } from '../buffers.js';
import { ProcessGroupBase } from './base.js';

export abstract class HostStagedGroup extends ProcessGroupBase {
  /** In place over host memory. */
  protected abstract allReduceHost(buf: HostBuffer, op: ReduceOp): void;
  protected abstract allGatherHost(output: HostBuffer, input: HostBuffer): void;
  protected abstract broadcastHost(buf: HostBuffer, root: number): void;

  protected movesMemoryOf(device: Required<CommDevice>): boolean {
    return device.type === 'cpu';
  }

  allReduce(buf: CommBuffer, op: ReduceOp = 'sum'): void {
    if (!isDeviceBuffer(buf)) return this.allReduceHost(buf, op);
    const h = buf.toHost();
    this.allReduceHost(h, op);
    buf.fromHost(h);
  }

  allGather(output: CommBuffer, input: CommBuffer): void {
    const hin = isDeviceBuffer(input) ? input.toHost() : input;
    if (!isDeviceBuffer(output)) return this.allGatherHost(output, hin);
    // The output's old contents do not matter: gather into a fresh array.
    const hout = allocHost(output.dtype, output.length);
    this.allGatherHost(hout, hin);
    output.fromHost(hout);
  }

  broadcast(buf: CommBuffer, root: number): void {
    if (!isDeviceBuffer(buf)) return this.broadcastHost(buf, root);
    // Only the root's contents matter; the others receive into a fresh array.
    const isRoot = root === this.rank;
    const h = isRoot ? buf.toHost() : allocHost(buf.dtype, buf.length);
    this.broadcastHost(h, root);
    if (!isRoot) buf.fromHost(h);
  }
}
