/**
 * allReduceAsync on the nccl backend without a GPU, against the stand-in
 * libnccl/libcudart of fixtures/nccl-fake.c, which logs every stream and
 * event operation and every collective with the stream it was queued on.
 * What is checked is the order of those operations on one rank: the
 * communication stream waits for an event of the buffer's stream before the
 * all-reduce, an event is recorded after it, and wait() (not the call) makes
 * the buffer's stream wait for that event. The stand-in runs collectives at
 * the call and its ranks do not talk (a sum multiplies by the rank count), so
 * timing across ranks is not modelled: that needs a GPU (tools/gpu-check).
 * The last test takes the buffer's stream and memory from the CUDA library
 * on the CUDA emulator (tools/cuda-emu), as a cuda tensor's bufferInfo does.
 */
import test from 'ava';
import koffi from 'koffi';
import { skipOrFail } from '@bagua/testing';
import { CollectiveError, type DeviceBuffer } from '../src/process-group.js';
import { createNcclProcessGroup, type NcclProcessGroup } from '../src/nccl/process-group.js';
import { FakeDeviceBuffer, MemoryStore, useFakeNccl, type FakeLibrary } from './helpers/nccl-fake.js';

// fixtures/nccl-fake.c's log kinds
const STREAM_CREATE = 1, STREAM_DESTROY = 2, EVENT_CREATE = 3, EVENT_RECORD = 5, STREAM_WAIT = 6, ALLREDUCE = 7;
const GROUP_START = 10, GROUP_END = 11;
const NAMES: Record<number, string> = {
  1: 'streamCreate', 2: 'streamDestroy', 3: 'eventCreate', 4: 'eventDestroy', 5: 'eventRecord', 6: 'streamWait',
  7: 'allReduce', 8: 'allGather', 9: 'broadcast', 10: 'groupStart', 11: 'groupEnd',
};
type Entry = [kind: number, a: bigint, b: bigint, c: bigint];

interface Fake extends FakeLibrary {
  control(asyncError: number, streamBusy: number, initSleepMs: number): void;
  fail(ncclCode: number, cudaCode: number): void;
  log(): Entry[];
  resetLog(): void;
  handles(): { eventsLive: number; eventsCreated: number; streamsLive: number };
}

let fake: Fake | null | undefined;
function bind(lib: FakeLibrary): Fake {
  const control = lib.lib.func('void fake_control(int a, int b, int c)');
  const fail = lib.lib.func('void fake_async_control(int nccl, int cuda)');
  const logRead = lib.lib.func('int fake_log_read(_Out_ int64_t *out, int max)');
  const logReset = lib.lib.func('void fake_log_reset(void)');
  const handles = lib.lib.func('void fake_handles(_Out_ int *out)');
  return {
    ...lib,
    control: (a, b, c) => control(a, b, c),
    fail: (n, c) => fail(n, c),
    log: () => {
      const out = new BigInt64Array(4096 * 4);
      const n = logRead(out, 4096) as number;
      const rows: Entry[] = [];
      for (let i = 0; i < n; i++) rows.push([Number(out[4 * i]), out[4 * i + 1]!, out[4 * i + 2]!, out[4 * i + 3]!]);
      return rows;
    },
    resetLog: () => logReset(),
    handles: () => {
      const o = new Int32Array(3);
      handles(o);
      return { eventsLive: o[0]!, eventsCreated: o[1]!, streamsLive: o[2]! };
    },
  };
}

function withFake(t: Parameters<typeof useFakeNccl>[0]): Fake | null {
  const lib = useFakeNccl(t);
  if (!lib) return null;
  fake ??= bind(lib);
  fake.control(0, 0, 0);
  fake.fail(0, 0);
  fake.resetLog();
  return fake;
}

/** Float32 device memory of the stand-in on `stream`. */
const fakeBuffer = (f: Fake, length: number, stream: bigint) => new FakeDeviceBuffer(f, 'float32', length, stream);

function group(prefix: string, opts: { blocking?: boolean; timeoutMs?: number } = {}): Promise<NcclProcessGroup> {
  return createNcclProcessGroup({ rank: 0, size: 1, store: new MemoryStore(), prefix, timeoutMs: opts.timeoutMs ?? 2000, blocking: opts.blocking ?? false });
}

function show(log: Entry[]): string {
  return log.map(([k, a, b]) => `${NAMES[k] ?? k}(${a.toString(16)}, ${b.toString(16)})`).join(' ');
}

// The buffer's stream (a compute stream): any distinct handle will do for the stand-in.
function computeStream(f: Fake): bigint {
  return f.malloc(8);
}

test.serial('allReduceAsync: the communication stream waits for the buffer\'s stream, wait() orders it back', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const pg = await group('order/');
  const S = computeStream(f);
  const buf = fakeBuffer(f, 6, S);
  buf.fromHost(new Float32Array([1, 2, 3, 4, 5, 6]));
  f.resetLog();
  const w = pg.allReduceAsync(buf, 'sum');
  const started = f.log();
  t.log(show(started));
  const create = started.find((e) => e[0] === STREAM_CREATE);
  t.truthy(create, 'a communication stream was made');
  const C = create![1];
  t.not(C, S);
  t.is(create![2], 1n, 'cudaStreamNonBlocking');
  const kinds = started.filter((e) => e[0] !== STREAM_CREATE && e[0] !== EVENT_CREATE);
  t.is(kinds.length, 4, show(kinds));
  const [rec, waitC, ar, done] = kinds as [Entry, Entry, Entry, Entry];
  t.deepEqual([rec[0], rec[2]], [EVENT_RECORD, S], 'first an event on the buffer\'s stream');
  t.deepEqual([waitC[0], waitC[1], waitC[2]], [STREAM_WAIT, C, rec[1]], 'the communication stream waits for it');
  t.deepEqual([ar[0], ar[1], ar[2]], [ALLREDUCE, C, 6n], 'the all-reduce goes on the communication stream');
  t.deepEqual([done[0], done[2]], [EVENT_RECORD, C], 'an event after it on the communication stream');
  t.false(started.some((e) => e[0] === STREAM_WAIT && e[1] === S), 'the buffer\'s stream is not made to wait before wait()');

  f.resetLog();
  f.control(0, 1, 0); // the device is "busy": the event is not complete
  t.false(w.done(), 'done() asks the event: not complete');
  const t0 = performance.now();
  w.wait();
  t.true(performance.now() - t0 < 100, 'wait() does not block the host on a group that is not blocking');
  t.deepEqual(f.log().map((e) => [e[0], e[1], e[2]]), [[STREAM_WAIT, S, done[1]]], 'wait(): the buffer\'s stream waits for the event after the all-reduce');
  t.true(w.done(), 'after wait() it is done');
  f.control(0, 0, 0);
  t.deepEqual([...buf.toHost()], [1, 2, 3, 4, 5, 6], 'one rank: the sum is itself');
  f.resetLog();
  w.wait(); // again: nothing queued
  t.deepEqual(f.log(), []);

  // A synchronous collective after it: on the same stream, ordered in and out the same way.
  pg.allReduce(buf, 'sum');
  const sync = f.log().filter((e) => e[0] !== EVENT_CREATE);
  t.deepEqual(sync.map((e) => [e[0], e[1]]), [[EVENT_RECORD, sync[0]![1]], [STREAM_WAIT, C], [ALLREDUCE, C], [EVENT_RECORD, sync[3]![1]], [STREAM_WAIT, S]],
    show(sync));
  t.is(sync[0]![2], S);
  pg.destroy();
});

test.serial('allReduceAsync: results on two ranks, sum and avg, several in flight', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const store = new MemoryStore();
  const [pg0, pg1] = await Promise.all([0, 1].map((rank) =>
    createNcclProcessGroup({ rank, size: 2, store, prefix: 'two/', timeoutMs: 2000 })));
  const S = computeStream(f);
  const a = fakeBuffer(f, 3, S);
  const b = fakeBuffer(f, 3, S);
  a.fromHost(new Float32Array([1, 2, 3]));
  b.fromHost(new Float32Array([-1, 0.5, 8]));
  const wa = pg0!.allReduceAsync(a, 'sum');
  const wb = pg0!.allReduceAsync(b, 'avg');
  const wc = pg1!.allReduceAsync(fakeBuffer(f, 1, S));
  wb.wait();
  wa.wait();
  wc.wait();
  t.deepEqual([...a.toHost()], [2, 4, 6], 'sum over 2 ranks of the same data (the stand-in\'s model)');
  t.deepEqual([...b.toHost()], [-1, 0.5, 8], 'avg');
  const ars = f.log().filter((e) => e[0] === ALLREDUCE);
  t.deepEqual(ars.map((e) => Number(e[3])), [0, 4, 0], 'ncclSum, ncclAvg, ncclSum in the order of the calls');
  pg0!.destroy();
  pg1!.destroy();
});

test.serial('allReduceCoalescedAsync: one NCCL group after every buffer\'s stream, each stream ordered back by wait()', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const store = new MemoryStore();
  const [pg0, pg1] = await Promise.all([0, 1].map((rank) =>
    createNcclProcessGroup({ rank, size: 2, store, prefix: 'many/', timeoutMs: 2000 })));
  const S1 = computeStream(f);
  const S2 = computeStream(f);
  const bufs = [fakeBuffer(f, 3, S1), fakeBuffer(f, 1, S2), fakeBuffer(f, 2, S1)];
  bufs.forEach((b, i) => b.fromHost(new Float32Array(b.length).fill(i + 1)));
  pg0!.allReduce(bufs[0]!); // makes the stream: not part of what is checked
  bufs[0]!.fromHost(new Float32Array([1, 1, 1]));
  const C = f.log().find((e) => e[0] === STREAM_CREATE)![1];
  f.resetLog();
  const w = pg0!.allReduceCoalescedAsync(bufs, 'sum');
  const log = f.log().filter((e) => e[0] !== EVENT_CREATE);
  t.log(show(log));
  t.deepEqual(log.map((e) => [e[0], e[1], e[2]]), [
    [EVENT_RECORD, log[0]![1], S1], [STREAM_WAIT, C, log[0]![1]],
    [EVENT_RECORD, log[0]![1], S2], [STREAM_WAIT, C, log[0]![1]],
    [GROUP_START, 0n, 1n], [ALLREDUCE, C, 3n], [ALLREDUCE, C, 1n], [ALLREDUCE, C, 2n], [GROUP_END, 0n, 1n],
    [EVENT_RECORD, log[9]![1], C],
  ], 'each buffer stream once, then the three all-reduces as one group on the communication stream');
  f.resetLog();
  w.wait();
  const done = log[9]![1];
  t.deepEqual(f.log().map((e) => [e[0], e[1], e[2]]), [[STREAM_WAIT, S1, done], [STREAM_WAIT, S2, done]]);
  t.deepEqual(bufs.map((b) => [...b.toHost()]), [[2, 2, 2], [4], [6, 6]]);

  t.throws(() => pg0!.allReduceCoalescedAsync([bufs[0]!, new Float32Array(1)]), { instanceOf: TypeError, message: /the buffer #1 is host memory/ });
  pg1!.allReduceCoalescedAsync([]).wait(); // nothing to do
  // an NCCL error inside the group: the group is still closed, the error kept for wait()
  f.resetLog();
  f.fail(2, 0);
  const bad = pg1!.allReduceCoalescedAsync(bufs);
  t.deepEqual(f.log().filter((e) => e[0] === GROUP_START || e[0] === GROUP_END || e[0] === ALLREDUCE).map((e) => e[0]), [GROUP_START, ALLREDUCE, GROUP_END]);
  t.throws(() => bad.wait(), { instanceOf: CollectiveError, message: /allReduceCoalescedAsync on group 'world' failed at rank 1: ncclSystemError/ });
  pg0!.destroy();
  pg1!.destroy();
});

test.serial('synchronous collectives go on the communication stream too: allGather waits for both buffers\' streams', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const pg = await group('gather/');
  const S1 = computeStream(f);
  const S2 = computeStream(f);
  const out = fakeBuffer(f, 2, S1);
  const inp = fakeBuffer(f, 2, S2);
  inp.fromHost(new Float32Array([3, 4]));
  pg.allGather(out, inp);
  const log = f.log().filter((e) => e[0] !== EVENT_CREATE);
  const C = log.find((e) => e[0] === STREAM_CREATE)![1];
  t.deepEqual(log.filter((e) => e[0] !== STREAM_CREATE).map((e) => [e[0], e[1]]), [
    [EVENT_RECORD, log[1]![1]], [STREAM_WAIT, C], [EVENT_RECORD, log[1]![1]], [STREAM_WAIT, C],
    [8, C], [EVENT_RECORD, log[6]![1]], [STREAM_WAIT, S1],
  ], show(log));
  t.deepEqual([log[1]![2], log[3]![2]], [S1, S2], 'the output\'s stream, then the input\'s');
  t.deepEqual([...out.toHost()], [3, 4]);
  pg.destroy();
});

test.serial('allReduceAsync: events come from a pool and go with the group, with its stream', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const before = f.handles();
  const pg = await group('pool/');
  const S = computeStream(f);
  const bufs = Array.from({ length: 5 }, () => fakeBuffer(f, 4, S));
  for (let round = 0; round < 20; round++) {
    const works = bufs.map((b) => pg.allReduceAsync(b, 'sum'));
    for (const w of works) w.wait();
    pg.allReduce(bufs[0]!); // a synchronous one in between takes one and gives it back
  }
  const during = f.handles();
  t.is(during.eventsCreated - before.eventsCreated, 5, '5 in flight at most: 5 events for 100 all-reduces');
  t.is(during.streamsLive - before.streamsLive, 1, 'one communication stream');
  pg.destroy();
  const after = f.handles();
  t.is(after.eventsLive, before.eventsLive, 'every event destroyed with the group');
  t.is(after.streamsLive, before.streamsLive, 'the communication stream destroyed with the group');
  t.true(f.log().some((e) => e[0] === STREAM_DESTROY));
});

test.serial('allReduceAsync: a blocking group waits in wait() for completion, bounded by the timeout', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const pg = await group('blocking/', { blocking: true, timeoutMs: 150 });
  const buf = fakeBuffer(f, 2, computeStream(f));
  const ok = pg.allReduceAsync(buf);
  ok.wait(); // complete at once in the stand-in
  f.control(0, 1, 0);
  const w = pg.allReduceAsync(buf);
  const t0 = Date.now();
  const e = t.throws(() => w.wait(), { instanceOf: CollectiveError });
  const took = Date.now() - t0;
  t.true(took >= 100 && took < 2000, `took ${took} ms`);
  t.regex(e!.message, /allReduceAsync on group 'world' failed at rank 0: did not complete within 150 ms; the communicator was aborted/);
  t.is(t.throws(() => w.wait()), e, 'the same error again');
  t.true(w.done());
  f.control(0, 0, 0);
  const after = pg.allReduceAsync(buf);
  t.throws(() => after.wait(), { instanceOf: CollectiveError, message: /aborted after an earlier failure/ });
  pg.destroy();
});

test.serial('allReduceAsync: errors are named; argument errors at the call, the others from wait()', async (t) => {
  const f = withFake(t);
  if (!f) return;
  let pg = await group('errors/');
  const S = computeStream(f);
  const buf = fakeBuffer(f, 2, S);

  t.throws(() => pg.allReduceAsync(new Float32Array(2)), { instanceOf: TypeError, message: /allReduceAsync on nccl group 'world': the buffer is host memory/ });
  t.throws(() => pg.allReduceAsync({ ...buf, device: 'cuda:1', toHost: buf.toHost, fromHost: buf.fromHost }), { instanceOf: TypeError, message: /cuda:1, the communicator on cuda:0/ });
  t.throws(() => pg.allReduceAsync(buf, 'prod' as never), { instanceOf: TypeError, message: /unknown reduce op 'prod'/ });

  // An NCCL error code from ncclAllReduce: kept for wait(), with NCCL's names for it.
  f.fail(2, 0);
  const w = pg.allReduceAsync(buf);
  const e = t.throws(() => w.wait(), { instanceOf: CollectiveError });
  t.regex(e!.message, /allReduceAsync on group 'world' failed at rank 0: ncclSystemError: unhandled system error \(fake\) \(fake last error\)/);
  t.true(w.done());
  pg.allReduceAsync(buf).wait(); // the communicator is still usable after an error NCCL returned

  // NCCL's asynchronous error: found at the call, reported by wait(); the communicator is aborted.
  f.control(6, 0, 0);
  const wa = pg.allReduceAsync(buf);
  t.throws(() => wa.wait(), { instanceOf: CollectiveError, message: /NCCL reported an asynchronous error: ncclRemoteError: remote process exited/ });
  f.control(0, 0, 0);
  t.throws(() => pg.allReduceAsync(buf).wait(), { message: /aborted after an earlier failure \(asynchronous error ncclRemoteError/ });
  pg.destroy();

  // ... or arising while it runs: wait() finds it.
  pg = await group('errors2/');
  const wl = pg.allReduceAsync(buf);
  f.control(6, 0, 0);
  t.throws(() => wl.wait(), { instanceOf: CollectiveError, message: /asynchronous error: ncclRemoteError/ });
  f.control(0, 0, 0);
  pg.destroy();

  // A CUDA error ordering the streams: this rank did not issue the collective, so the communicator is aborted.
  pg = await group('errors3/');
  pg.allReduceAsync(buf).wait(); // the stream and an event exist
  f.resetLog();
  f.fail(0, 400);
  const wc = pg.allReduceAsync(buf);
  t.false(f.log().some((x) => x[0] === ALLREDUCE), 'no all-reduce was issued');
  t.throws(() => wc.wait(), {
    instanceOf: CollectiveError,
    message: /ordering the communication stream after the buffer's stream \(cudaEventRecord, cudaStreamWaitEvent\) failed: cudaError 400: fake cuda error; the communicator was aborted/,
  });
  t.throws(() => pg.allReduce(buf), { message: /aborted after an earlier failure/ });
  pg.destroy();

  // wait() after the group is gone: its event went with it.
  pg = await group('errors4/');
  const wd = pg.allReduceAsync(buf);
  pg.destroy();
  t.throws(() => wd.wait(), { instanceOf: CollectiveError, message: /the process group was destroyed before wait\(\)/ });
  t.throws(() => pg.allReduceAsync(buf), { instanceOf: CollectiveError, message: /destroyed/ });
});

test.serial('allReduceAsync on the CUDA emulator: a cuda storage\'s stream and memory (tools/cuda-emu)', async (t) => {
  const libPath = process.env.BAGUA_KERNELS_CUDA_LIB;
  if (!libPath) {
    skipOrFail(t, 'cuda', 'BAGUA_KERNELS_CUDA_LIB is not set: run under tools/cuda-emu (or on a GPU) for this test');
    return;
  }
  const f = withFake(t);
  if (!f) return;
  const k = koffi.load(libPath);
  const rt = {
    stream: k.func('int bk_cuda_stream(int32_t device, _Out_ void **stream)'),
    malloc: k.func('int bk_cuda_malloc(_Out_ void **ptr, int64_t nbytes, int32_t device)'),
    free: k.func('int bk_cuda_free(void *ptr)'),
    h2d: k.func('int bk_cuda_memcpy_h2d(void *dst, const void *src, int64_t nbytes, void *stream)'),
    d2h: k.func('int bk_cuda_memcpy_d2h(void *dst, const void *src, int64_t nbytes, void *stream)'),
    sync: k.func('int bk_cuda_synchronize(void *stream)'),
  };
  const out: unknown[] = [null];
  t.is(rt.stream(0, out), 0, 'the CUDA library\'s stream of cuda:0');
  const S = BigInt(out[0] as bigint);
  t.is(rt.malloc(out, 4 * 4, 0), 0);
  const ptr = BigInt(out[0] as bigint);
  const buf: DeviceBuffer = {
    device: 'cuda:0', dtype: 'float32', length: 4, ptr, stream: S,
    toHost: () => {
      const h = new Float32Array(4);
      rt.d2h(h, ptr, 16, S);
      rt.sync(S);
      return h;
    },
    fromHost: (src) => {
      rt.h2d(ptr, src, src.byteLength, S);
    },
  };
  buf.fromHost(new Float32Array([0.5, -2, 3, 1e6]));
  const store = new MemoryStore();
  const [pg0, pg1] = await Promise.all([0, 1].map((rank) =>
    createNcclProcessGroup({ rank, size: 2, store, prefix: 'emu/', timeoutMs: 2000 })));
  f.resetLog();
  const w = pg0!.allReduceAsync(buf, 'sum');
  w.wait();
  const log = f.log();
  const rec = log.find((e) => e[0] === EVENT_RECORD)!;
  t.is(rec[2], S, 'the event is recorded on the CUDA library\'s stream');
  const last = log[log.length - 1]!;
  t.deepEqual([last[0], last[1]], [STREAM_WAIT, S], 'wait() makes that stream wait');
  t.deepEqual([...buf.toHost()], [1, -4, 6, 2e6]);
  pg0!.destroy();
  pg1!.destroy();
  rt.free(ptr);
});
