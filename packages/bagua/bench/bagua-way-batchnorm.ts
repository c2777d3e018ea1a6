/**
 * The benchmark's model of Bagua's SyncBatchNorm (bagua/torch_api/contrib/
 * sync_batchnorm.py), built from the same core primitives as our
 * SyncBatchNorm so that only the communication differs:
 *
 * forward: THREE blocking all-gathers, one each for the means, the variances
 *   and the counts, each after its own device-to-host download;
 * backward: TWO blocking all-reduces, one for sum_dy and one for sum_dy_xmu,
 *   each after its own download.
 *
 * Bagua gathers invstd where this gathers the biased variance: our merge
 * primitive takes variances, and turning invstd back into a variance would
 * round differently. The traffic (C floats) and the number of collectives
 * are the same, and the outputs match ours exactly, so the timing comparison
 * is fair. Not part of the library: benchmark use only.
 */
import { F, nn, tensor, type Tensor } from '@bagua/core';
import type { ProcessGroup } from '@bagua/comm';
import { SyncBatchNorm } from '../src/index.js';

/** Our SyncBatchNorm with only the communication replaced: everything else is shared. */
export class BaguaWaySyncBatchNorm extends SyncBatchNorm {
  constructor(numFeatures: number, group: ProcessGroup, opts: nn.BatchNormOptions = {}) {
    super(numFeatures, { ...opts, processGroup: group });
  }

  protected override syncForward(x: Tensor, group: ProcessGroup, factor: number): Tensor {
    const c = this.numFeatures;
    const ranks = group.size;
    const width = 2 * c + 1;

    const local = F.batchNormStats(x); // [mean(C), var(C), count, tag] on the device (the tag unused here)
    // Three collectives, each with its own host round trip, as Bagua does.
    const meanAll = new Float32Array(ranks * c);
    group.allGather(meanAll, (local.toArray() as Float32Array).slice(0, c));
    const varAll = new Float32Array(ranks * c);
    group.allGather(varAll, (local.toArray() as Float32Array).slice(c, 2 * c));
    const countAll = new Float32Array(ranks);
    group.allGather(countAll, (local.toArray() as Float32Array).slice(2 * c, width));

    const records = new Float32Array(ranks * width);
    let globalCount = 0;
    for (let r = 0; r < ranks; r++) {
      records.set(meanAll.subarray(r * c, (r + 1) * c), r * width);
      records.set(varAll.subarray(r * c, (r + 1) * c), r * width + c);
      records[r * width + 2 * c] = countAll[r];
      globalCount += countAll[r];
    }
    if (globalCount === 1) {
      throw new Error(`BaguaWaySyncBatchNorm: expected more than 1 value per channel when training, got ${globalCount}`);
    }
    // Untagged rows of 2C+1 (odd width): the merge reads them with stride 2C+1.
    const gathered = tensor(records, { shape: [ranks, width], device: x.device });
    return this.normalizeSynced(x, gathered, factor, 'BaguaWaySyncBatchNorm', (local) => {
      // Two all-reduces, each with its own host round trip.
      const sumDy = (local.toArray() as Float32Array).slice(0, c);
      group.allReduce(sumDy, 'sum');
      const sumDyXmu = (local.toArray() as Float32Array).slice(c, 2 * c);
      group.allReduce(sumDyXmu, 'sum');
      const sums = new Float32Array(2 * c);
      sums.set(sumDy);
      sums.set(sumDyXmu, c);
      return tensor(sums, { device: local.device });
    });
  }
}
