/**
 * Fashion-MNIST (Debian's dataset-fashion-mnist, read by train-cnn's reader) or
 * train-cnn's synthetic images, as a Dataset the DataLoader reads on its worker
 * thread: the images are loaded where they are read (the worker), padded from
 * 28x28 to 32x32 with zeros and normalised (torchvision's Pad(2) then Normalize),
 * so a rank's own thread holds no pixels.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import type { data } from '@bagua/core';
import { FASHION_MNIST_DIR, fashionMnist, synthetic, type Dataset as Images } from 'train-cnn/dist/src/data.js';

export type Source = 'fashion-mnist' | 'synthetic';

export interface ImageSetSpec {
  source: Source;
  split: 'train' | 't10k';
  /** at most this many images */
  limit: number;
  /** synthetic only: the generator's seed */
  seed?: number;
}

/** Fashion-MNIST's pixel mean and standard deviation (of the training set, in [0, 1]). */
const MEAN = 0.2860;
const STD = 0.3530;
const PAD = 2;
const SIZE = 28 + 2 * PAD;

type Item = [data.HostTensor, number];

/** The number of images without reading them (the label file's header, or the synthetic count). */
function countOf(spec: ImageSetSpec): number {
  if (spec.source === 'synthetic') return spec.limit;
  const labels = gunzipSync(readFileSync(`${FASHION_MNIST_DIR}/${spec.split}-labels-idx1-ubyte.gz`));
  return Math.min(labels.readUInt32BE(4), spec.limit);
}

export class ImageSet implements data.Dataset<Item> {
  readonly length: number;
  private images: Images | null = null;

  constructor(readonly spec: ImageSetSpec) {
    if (!Number.isInteger(spec.limit) || spec.limit < 1) throw new Error(`ImageSet: limit must be a positive integer, got ${spec.limit}`);
    this.length = countOf(spec);
  }

  private load(): Images {
    this.images ??= this.spec.source === 'synthetic'
      ? synthetic(this.spec.limit, 28, (this.spec.seed ?? 7) + (this.spec.split === 'train' ? 0 : 1))
      : fashionMnist(this.spec.split, this.spec.limit);
    return this.images;
  }

  /** Image i as [1, 32, 32] float32 (padded, normalised) and its label. */
  getItem(i: number): Item {
    const images = this.load();
    const out = new Float32Array(SIZE * SIZE).fill((0 - MEAN) / STD);
    const src = images.images.subarray(i * 28 * 28, (i + 1) * 28 * 28);
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) out[(y + PAD) * SIZE + x + PAD] = (src[y * 28 + x] - MEAN) / STD;
    }
    return [{ data: out, shape: [1, SIZE, SIZE], dtype: 'float32' }, images.labels[i]];
  }

  workerSource(): data.WorkerSource {
    return { module: import.meta.url, factory: 'imageSetFromSpec', spec: this.spec };
  }
}

export function imageSetFromSpec(spec: ImageSetSpec): ImageSet {
  return new ImageSet(spec);
}
