/**
 * Host staging, the layer every host-only backend (threads, gloo) gets: its
 * collectives take typed arrays only, and this class copies device buffers
 * to the host (toHost) before and back (fromHost) after. Such a backend
 * supports the cpu alone: `supports('cuda:0')` is false, so callers know a
 * device buffer costs two host copies here.
 */
import type { CommBuffer, CommDevice, HostBuffer, ReduceOp, Work } from '../process-group.js';
import { allocHost, isDeviceBuffer } from '../buffers.js';
import { completedWork } from '../process-group.js';
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

  /** Started over host memory; a backend that can overlap overrides it (default: runs at the call). */
  protected allReduceHostAsync(buf: HostBuffer, op: ReduceOp): Work {
    return completedWork(() => this.allReduceHost(buf, op));
  }

  override allReduceAsync(buf: CommBuffer, op: ReduceOp = 'sum'): Work {
    if (!isDeviceBuffer(buf)) return this.allReduceHostAsync(buf, op);
    // The host copy is the collective's buffer; the device gets the result at wait().
    const h = buf.toHost();
    const work = this.allReduceHostAsync(h, op);
    let copied = false;
    return {
      wait() {
        work.wait();
        if (!copied) buf.fromHost(h);
        copied = true;
      },
      done: () => work.done(),
    };
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
