import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Generator } from '@bagua/core';

export interface Dataset {
  /** [count, 1, size, size] pixels in [0, 1], row-major */
  images: Float32Array;
  labels: Int32Array;
  count: number;
  size: number;
  classes: number;
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** Reads one gzipped IDX file (the MNIST format: magic, dimensions, then unsigned bytes). */
function readIdx(path: string): { dims: number[]; data: Uint8Array } {
  const buf = gunzipSync(readFileSync(path));
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0);
  if (magic >> 8 !== 0x08) throw new Error(`${path}: not an unsigned-byte IDX file (magic 0x${magic.toString(16)})`);
  const dims = Array.from({ length: magic & 0xff }, (_, i) => view.getUint32(4 + 4 * i));
  return { dims, data: buf.subarray(4 + 4 * dims.length) };
}

/** Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist). */
export function fashionMnist(split: 'train' | 't10k' = 'train', limit = Infinity): Dataset {
  const images = `${FASHION_MNIST_DIR}/${split}-images-idx3-ubyte.gz`;
  const labels = `${FASHION_MNIST_DIR}/${split}-labels-idx1-ubyte.gz`;
  if (!existsSync(images) || !existsSync(labels)) {
    throw new Error(`fashion-mnist not found in ${FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist`);
  }
  const img = readIdx(images);
  const lab = readIdx(labels);
  const count = Math.min(img.dims[0], limit);
  const size = img.dims[1];
  const pixels = new Float32Array(count * size * size);
  for (let i = 0; i < pixels.length; i++) pixels[i] = img.data[i] / 255;
  return { images: pixels, labels: Int32Array.from(lab.data.subarray(0, count)), count, size, classes: 10 };
}

/**
 * Synthetic images that a small CNN can learn: each class is a bright
 * square at its own place on a noisy background. Deterministic for a seed.
 */
export function synthetic(count: number, size = 16, seed = 7): Dataset {
  const gen = new Generator(seed);
  const images = new Float32Array(count * size * size);
  const labels = new Int32Array(count);
  const cells = 4;
  const cell = Math.floor(size / cells);
  for (let i = 0; i < count; i++) {
    const label = Math.floor(gen.uniform() * 10);
    labels[i] = label;
    const cy = Math.floor(label / cells) * cell;
    const cx = (label % cells) * cell;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inside = y >= cy && y < cy + cell && x >= cx && x < cx + cell;
        images[(i * size + y) * size + x] = (inside ? 0.8 : 0.1) + 0.25 * gen.normal();
      }
    }
  }
  return { images, labels, count, size, classes: 10 };
}
