/**
 * The bk_status values of native/include/bagua_kernels.h (test/kernel-table.test.ts
 * checks them against the header), and the Error a failed kernel call throws.
 */

/** bk_status: what every int returned by a kernel or runtime function means. */
export const BK_STATUS = {
  BK_OK: 0,
  BK_ERR_INVALID_ARGUMENT: 1,
  BK_ERR_OUT_OF_MEMORY: 2,
  BK_ERR_UNSUPPORTED: 3,
  BK_ERR_DEVICE: 4,
  BK_ERR_LIBRARY: 5,
} as const;

export type BkStatusName = keyof typeof BK_STATUS;

/** The name of a status code ('BK_ERR_UNKNOWN' for a value the header does not define). */
export function statusName(status: number): BkStatusName | 'BK_ERR_UNKNOWN' {
  for (const k of Object.keys(BK_STATUS) as BkStatusName[]) if (BK_STATUS[k] === status) return k;
  return 'BK_ERR_UNKNOWN';
}

/** A kernel library call that failed: the library's message, and its bk_status. */
export class KernelError extends Error {
  readonly code: BkStatusName | 'BK_ERR_UNKNOWN';
  constructor(message: string, readonly status: number) {
    super(message); // name stays 'Error': messages and stack headers read as before
    this.code = statusName(status);
  }
}
