import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { ByteStream, Endpoint } from '../src/runtime/contract.js';
import { createRealRuntime } from '../src/runtime/real/runtime.js';

const T = { timeout: 20_000 };

function isPlainView(data: Uint8Array): boolean {
  return Object.getPrototypeOf(data) === Uint8Array.prototype;
}

async function udpRoundTrip(host: string): Promise<void> {
  const rt = createRealRuntime();
  const a = await rt.bindDatagram({ host });
  const b = await rt.bindDatagram({ host });
  try {
    assert.equal(a.local.host, host);
    assert.ok(a.local.port > 0 && a.local.port !== b.local.port);
    b.onMessage((from, data) => b.send(from, Uint8Array.from(data, (x) => x ^ 0xff)));
    const reply = new Promise<{ from: Endpoint; data: Uint8Array }>((resolve) => a.onMessage((from, data) => resolve({ from, data })));
    a.send(b.local, Uint8Array.from([1, 2, 3, 250]));
    const { from, data } = await reply;
    assert.deepEqual(from, b.local);
    assert.ok(isPlainView(data));
    assert.deepEqual(data, Uint8Array.from([254, 253, 252, 5]));
  } finally {
    a.close();
    b.close();
  }
  a.send(b.local, new Uint8Array(1)); // a no-op after close
}

test('UDP round trip on 127.0.0.1', T, () => udpRoundTrip('127.0.0.1'));

test('UDP round trip on ::1', T, () => udpRoundTrip('::1'));

test('UDP bind errors: a taken port, a non-IP host', T, async () => {
  const rt = createRealRuntime();
  const a = await rt.bindDatagram();
  try {
    await assert.rejects(rt.bindDatagram({ port: a.local.port }), { code: 'EADDRINUSE' });
    await assert.rejects(rt.bindDatagram({ host: 'localhost' }), { code: 'EINVAL' });
  } finally {
    a.close();
  }
});

function pattern(size: number): Uint8Array {
  // Deterministic, non-repeating-looking content: a cheap LCG.
  const out = new Uint8Array(size);
  let x = 0x12345678;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

test('TCP echo of 8 MiB: byte-exact, with backpressure on both sides', T, async () => {
  const rt = createRealRuntime();
  const total = 8 * 1024 * 1024;
  const source = pattern(total);
  let serverStream: ByteStream | undefined;
  let serverClosed: Error | undefined | null = null;
  const listener = await rt.listenStream({}, (stream) => {
    serverStream = stream;
    // Do not read until the client has seen backpressure.
    stream.pause();
    stream.onData((chunk) => {
      if (!stream.write(chunk)) {
        // Echo with backpressure: stop reading until our writes drain.
        stream.pause();
      }
    });
    stream.onDrain(() => stream.resume());
    stream.onClose((error) => (serverClosed = error));
  });
  assert.equal(listener.local.host, '127.0.0.1');
  const client = await rt.connectStream(listener.local, { timeoutMs: 5000 });
  assert.deepEqual(client.remote, listener.local);

  const echoed: Uint8Array[] = [];
  let echoedBytes = 0;
  const closed = new Promise<Error | undefined>((resolve) => client.onClose(resolve));
  client.onData((chunk) => {
    assert.ok(isPlainView(chunk));
    echoed.push(chunk);
    echoedBytes += chunk.length;
    if (echoedBytes === total) client.end();
  });

  let offset = 0;
  let stalls = 0;
  const pump = (): void => {
    while (offset < total) {
      const chunk = source.subarray(offset, Math.min(total, offset + 64 * 1024));
      offset += chunk.length;
      if (!client.write(chunk)) {
        stalls++;
        if (stalls === 1) serverStream?.resume(); // the reader wakes up only now
        return;
      }
    }
  };
  client.onDrain(pump);
  pump();
  assert.ok(stalls >= 1, 'the client never saw write() return false'); // the server is not reading yet

  assert.equal(await closed, undefined);
  listener.close();
  assert.equal(echoedBytes, total);
  const hash = (chunks: Uint8Array[]): string => {
    const h = createHash('sha256');
    for (const c of chunks) h.update(c);
    return h.digest('hex');
  };
  assert.equal(hash(echoed), hash([source]));
  assert.equal(serverClosed, undefined);
});

test('TCP: end() closes both sides once, late onClose handlers still run', T, async () => {
  const rt = createRealRuntime();
  let serverCloses = 0;
  let serverDone!: () => void;
  const serverClosed = new Promise<void>((resolve) => (serverDone = resolve));
  const listener = await rt.listenStream({}, (stream) => {
    stream.onData(() => {});
    stream.onClose((error) => {
      assert.equal(error, undefined);
      serverCloses++;
      serverDone();
    });
  });
  const client = await rt.connectStream(listener.local);
  let clientCloses = 0;
  const clientClosed = new Promise<void>((resolve) =>
    client.onClose(() => {
      clientCloses++;
      resolve();
    }),
  );
  client.onData(() => {});
  client.write(Uint8Array.from([1, 2, 3]));
  client.end();
  await Promise.all([serverClosed, clientClosed]);
  listener.close();
  const late = await new Promise<Error | undefined>((resolve) => client.onClose(resolve));
  assert.equal(late, undefined);
  assert.equal(client.write(new Uint8Array(1)), false);
  client.destroy(); // harmless after close
  assert.equal(serverCloses, 1);
  assert.equal(clientCloses, 1);
});

test('TCP: connecting to a closed port is refused', T, async () => {
  const rt = createRealRuntime();
  const listener = await rt.listenStream({}, () => {});
  const port = listener.local.port;
  listener.close();
  await assert.rejects(rt.connectStream({ host: '127.0.0.1', port }, { timeoutMs: 5000 }), { code: 'ECONNREFUSED' });
});

test('timers fire in deadline order, same deadlines in insertion order, never early', T, async () => {
  const rt = createRealRuntime();
  const t0 = rt.clock.now();
  const fired: string[] = [];
  const late: number[] = [];
  const done = new Promise<void>((resolve) => {
    const at = (label: string, deadline: number): void => {
      rt.timers.at(deadline, () => {
        late.push(rt.clock.now() - deadline);
        fired.push(label);
        if (label === 'last') resolve();
      });
    };
    at('c', t0 + 30);
    at('a', t0 + 10);
    at('b1', t0 + 20);
    at('b2', t0 + 20);
    at('b3', t0 + 20);
    at('past', t0 - 1000);
    at('last', t0 + 45);
    const cancelled = rt.timers.at(t0 + 15, () => fired.push('cancelled'));
    cancelled.cancel();
  });
  await done;
  assert.deepEqual(fired, ['past', 'a', 'b1', 'b2', 'b3', 'c', 'last']);
  for (const l of late) assert.ok(l >= 0, `a timer fired ${-l} ms early`);
  assert.throws(() => rt.timers.at(NaN, () => {}), RangeError);
});

test('clock is monotonic; crypto random and seeded random behave', T, () => {
  const rt = createRealRuntime();
  let previous = rt.clock.now();
  for (let i = 0; i < 1000; i++) {
    const now = rt.clock.now();
    assert.ok(now >= previous);
    previous = now;
  }
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const v = rt.random.u32();
    assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** 32);
    seen.add(v);
    const b = rt.random.below(7);
    assert.ok(b >= 0 && b < 7);
  }
  assert.ok(seen.size > 1990);
  const bytes = rt.random.bytes(33);
  assert.equal(bytes.length, 33);
  assert.ok(isPlainView(bytes));

  const s1 = createRealRuntime({ seed: 9 }).random;
  const s2 = createRealRuntime({ seed: 9 }).random;
  assert.deepEqual([s1.u32(), s1.u32(), s1.float()], [s2.u32(), s2.u32(), s2.float()]);
});

test('TCP: outgoing streams lend their read buffer to borrowing handlers; others get copies that stay intact', T, async () => {
  const rt = createRealRuntime();
  const total = 4 * 1024 * 1024;
  const source = pattern(total);
  const listener = await rt.listenStream({}, (stream) => {
    stream.onData(() => {});
    let at = 0;
    const push = (): void => {
      while (at < total) {
        const chunk = source.subarray(at, Math.min(total, at + 100_000));
        at += chunk.length;
        if (!stream.write(chunk)) return;
      }
      stream.end();
    };
    stream.onDrain(push);
    push();
  });
  const client = await rt.connectStream(listener.local);
  // Let data pile up before any handler exists: it must wait, then arrive in order.
  await new Promise((r) => setTimeout(r, 50));
  const kept: Uint8Array[] = [];
  const borrowedHash = createHash('sha256');
  const lent = new Set<ArrayBufferLike>();
  let borrowedBytes = 0;
  client.onData((d) => kept.push(d)); // keeps references: must be given memory of its own
  client.onData(
    (d) => {
      borrowedHash.update(d);
      borrowedBytes += d.length;
      lent.add(d.buffer);
    },
    { borrow: true },
  );
  await new Promise<void>((resolve) => client.onClose(() => resolve()));
  listener.close();
  assert.equal(borrowedBytes, total);
  assert.equal(borrowedHash.digest('hex'), createHash('sha256').update(source).digest('hex'));
  const keptHash = createHash('sha256');
  for (const c of kept) keptHash.update(c);
  assert.equal(keptHash.digest('hex'), createHash('sha256').update(source).digest('hex'), 'copies were overwritten by later reads');
  // After the bytes that waited for a handler, reads came through one shared buffer.
  assert.ok(lent.size < 10, `${lent.size} distinct buffers lent`);
  assert.ok(kept.every((c) => !lent.has(c.buffer)));
});

test('TCP: pause() stops a borrowing handler until resume(); write callbacks run once, also for writes a destroy drops', T, async () => {
  const rt = createRealRuntime();
  let server: ByteStream | undefined;
  const got = { n: 0 };
  const listener = await rt.listenStream({}, (stream) => {
    server = stream;
    stream.onData(() => {});
  });
  const client = await rt.connectStream(listener.local);
  client.onData((d) => (got.n += d.length), { borrow: true });
  while (!server) await new Promise((r) => setTimeout(r, 5));
  client.pause();
  server.write(new Uint8Array(1000));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(got.n, 0, 'data delivered while paused');
  client.resume();
  while (got.n < 1000) await new Promise((r) => setTimeout(r, 5));
  assert.equal(got.n, 1000);

  // The server stops reading, so most of 64 MiB stays queued in the client when it is destroyed.
  server.pause();
  let called = 0;
  const writes = 64;
  const block = new Uint8Array(1024 * 1024);
  for (let i = 0; i < writes; i++) client.write(block, () => called++);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(called < writes, 'every write completed although the reader was paused');
  client.destroy();
  await new Promise<void>((resolve) => client.onClose(() => resolve()));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(called, writes);
  let late = 0;
  assert.equal(client.write(block, () => late++), false);
  assert.equal(late, 1, 'a write on a closed stream frees its buffer at once');
  listener.close();
});
