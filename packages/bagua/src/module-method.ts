import { nn } from '@bagua/core';
import type { ProcessGroup } from '@bagua/comm';
import { withBagua, type Algorithm, type BaguaModule } from './algorithms.js';

declare module '@bagua/core/nn/module' {
  interface Module {
    /** Bagua's `model.with_bagua([optimizer], algorithm)`; see withBagua. */
    withBagua<M extends Module>(this: M, optimizers: readonly { step(): void }[], algorithm: Algorithm,
      opts?: { processGroup?: ProcessGroup | null }): BaguaModule<M>;
  }
}

nn.Module.prototype.withBagua = function withBaguaMethod<M extends nn.Module>(this: M,
  optimizers: readonly { step(): void }[], algorithm: Algorithm, opts?: { processGroup?: ProcessGroup | null }) {
  return withBagua(this, optimizers, algorithm, opts);
};
