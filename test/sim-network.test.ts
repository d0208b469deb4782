import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ByteStream, Endpoint } from '../src/runtime/contract.js';
import { SimNetwork, SimNetError, seededRandom, type SimHost } from '../src/runtime/sim/index.js';

function bytesOf(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

test('hosts get distinct virtual addresses and their own reproducible random streams', () => {
  const net = new SimNetwork({ seed: 1 });
  const a = net.addHost();
  const b = net.addHost();
  const c = net.addHost({ address: 'fd00::7', name: 'six' });
  assert.equal(a.address, '10.0.0.1');
  assert.equal(b.address, '10.0.0.2');
  assert.equal(c.name, 'six');
  assert.equal(net.host('fd00::7'), c);
  assert.throws(() => net.addHost({ address: '10.0.0.1' }), SimNetError);
  assert.notEqual(a.runtime.random.u32(), b.runtime.random.u32());

  const again = new SimNetwork({ seed: 1 });
  const a2 = again.addHost();
  const a1 = new SimNetwork({ seed: 1 }).addHost();
  assert.equal(a1.runtime.random.u32(), a2.runtime.random.u32());
  assert.notEqual(new SimNetwork({ seed: 2 }).addHost().runtime.random.u32(), new SimNetwork({ seed: 1 }).addHost().runtime.random.u32());
  assert.equal(a.runtime.clock.now(), 0);
});

test('datagrams arrive after the link latency, with the sender as source', async () => {
  const net = new SimNetwork({ seed: 3, latencyMs: 25 });
  const a = net.addHost();
  const b = net.addHost();
  const sa = await a.runtime.bindDatagram();
  const sb = await b.runtime.bindDatagram({ port: 9000 });
  assert.deepEqual(sb.local, { host: '10.0.0.2', port: 9000 });
  assert.equal(sa.local.host, '10.0.0.1');
  const log: string[] = [];
  sb.onMessage((from, data) => {
    log.push(`b got ${data.join(',')} from ${from.host}:${from.port} at ${net.now}`);
    sb.send(from, bytesOf(data[0]! + 1));
  });
  sa.onMessage((from, data) => log.push(`a got ${data.join(',')} from ${from.host}:${from.port} at ${net.now}`));
  const payload = bytesOf(7);
  sa.send(sb.local, payload);
  payload[0] = 99; // the network copied the datagram at send time
  net.engine.runUntilIdle();
  assert.deepEqual(log, [`b got 7 from 10.0.0.1:${sa.local.port} at 25`, 'a got 8 from 10.0.0.2:9000 at 50']);
  assert.equal(net.stats.datagramsDelivered, 2);
});

test('a socket bound with noCopy hands its very bytes to the receiver; others get a copy', () => {
  const net = new SimNetwork({ seed: 3, latencyMs: 5 });
  const a = net.addHost();
  const b = net.addHost();
  const shared = a.bind({ port: 1 }, { noCopy: true });
  const copied = a.bind({ port: 2 });
  const sb = b.bind({ port: 9 });
  const got: Uint8Array[] = [];
  sb.onMessage((_from, data) => got.push(data));
  const p1 = bytesOf(1);
  const p2 = bytesOf(2);
  shared.send(sb.local, p1);
  copied.send(sb.local, p2);
  net.engine.runUntilIdle();
  assert.equal(got.length, 2);
  assert.equal(got[0], p1);
  assert.notEqual(got[1], p2);
  assert.deepEqual(got[1], p2);
});

test('a latency function gives per-link, possibly asymmetric latencies', async () => {
  const net = new SimNetwork({
    latencyMs: (from: SimHost, to: SimHost) => (from.name === 'far' || to.name === 'far' ? 100 : 5) + (from.name === 'far' ? 20 : 0),
  });
  const near1 = net.addHost({ name: 'near1' });
  const near2 = net.addHost({ name: 'near2' });
  const far = net.addHost({ name: 'far' });
  const s1 = await near1.runtime.bindDatagram();
  const s2 = await near2.runtime.bindDatagram();
  const sf = await far.runtime.bindDatagram();
  const arrivals: string[] = [];
  for (const [name, s] of [['near2', s2], ['far', sf], ['near1', s1]] as const) s.onMessage((from) => arrivals.push(`${name}<-${from.host}@${net.now}`));
  s1.send(s2.local, bytesOf(1));
  s1.send(sf.local, bytesOf(1));
  sf.send(s1.local, bytesOf(1));
  net.engine.runUntilIdle();
  assert.deepEqual(arrivals, ['near2<-10.0.0.1@5', 'far<-10.0.0.1@100', 'near1<-10.0.0.3@120']);
});

test('loss: with a fixed seed, a loss rate of 0.3 drops about 30 % of datagrams', async () => {
  const net = new SimNetwork({ seed: 77, latencyMs: 1, loss: 0.3 });
  const a = net.addHost();
  const b = net.addHost();
  const sa = await a.runtime.bindDatagram();
  const sb = await b.runtime.bindDatagram();
  let received = 0;
  sb.onMessage(() => received++);
  const n = 20_000;
  for (let i = 0; i < n; i++) sa.send(sb.local, bytesOf(i & 0xff));
  net.engine.runUntilIdle();
  const lossRate = 1 - received / n;
  assert.ok(Math.abs(lossRate - 0.3) < 0.02, `loss rate ${lossRate}`);
  assert.equal(net.stats.datagramsLost + received, n);
  assert.equal(net.stats.datagramsSent, n);
});

test('per-link loss function: a link with loss 1 delivers nothing, others everything', async () => {
  const net = new SimNetwork({ loss: (from, to) => (from.address === '10.0.0.1' && to.address === '10.0.0.2' ? 1 : 0) });
  const a = net.addHost();
  const b = net.addHost();
  const sa = await a.runtime.bindDatagram();
  const sb = await b.runtime.bindDatagram();
  let toA = 0;
  let toB = 0;
  sa.onMessage(() => toA++);
  sb.onMessage(() => toB++);
  for (let i = 0; i < 100; i++) {
    sa.send(sb.local, bytesOf(1));
    sb.send(sa.local, bytesOf(2));
  }
  net.engine.runUntilIdle();
  assert.equal(toB, 0);
  assert.equal(toA, 100);
  assert.throws(() => new SimNetwork({ loss: 1.5 }), RangeError);
});

test('datagrams to an unbound port, a closed socket or an unknown host are silently dropped', async () => {
  const net = new SimNetwork({ latencyMs: 10 });
  const a = net.addHost();
  const b = net.addHost();
  const sa = await a.runtime.bindDatagram();
  const sb = await b.runtime.bindDatagram({ port: 5000 });
  let received = 0;
  sb.onMessage(() => received++);
  sa.send({ host: b.address, port: 5001 }, bytesOf(1)); // nobody bound
  sa.send({ host: '10.9.9.9', port: 5000 }, bytesOf(1)); // no such host
  sa.send(sb.local, bytesOf(1)); // closed before it arrives
  net.engine.schedule(5, () => sb.close());
  net.engine.runUntilIdle();
  assert.equal(received, 0);
  assert.equal(net.stats.datagramsNoListener, 2);
  assert.equal(net.stats.datagramsUnroutable, 1);
  sb.send(sa.local, bytesOf(1)); // sending on a closed socket is a no-op
  net.engine.runUntilIdle();
  assert.equal(net.stats.datagramsSent, 3);
});

test('binding: ephemeral ports are distinct, taken ports and foreign addresses are refused', async () => {
  const net = new SimNetwork();
  const a = net.addHost();
  const s1 = await a.runtime.bindDatagram();
  const s2 = await a.runtime.bindDatagram({ host: '0.0.0.0' });
  assert.notEqual(s1.local.port, s2.local.port);
  assert.equal(s2.local.host, a.address);
  await a.runtime.bindDatagram({ port: 6881 });
  await assert.rejects(a.runtime.bindDatagram({ port: 6881 }), { code: 'EADDRINUSE' });
  await assert.rejects(a.runtime.bindDatagram({ host: '127.0.0.1' }), { code: 'EADDRNOTAVAIL' });
  const l = await a.runtime.listenStream({ port: 6881 }, () => {}); // TCP and UDP port spaces are separate
  await assert.rejects(a.runtime.listenStream({ port: 6881 }, () => {}), { code: 'EADDRINUSE' });
  l.close();
  await a.runtime.listenStream({ port: 6881 }, () => {});
});

test('streams: connect takes a round trip, bytes arrive in order after the latency', async () => {
  const net = new SimNetwork({ seed: 5, latencyMs: 20 });
  const server = net.addHost();
  const client = net.addHost();
  const received: Uint8Array[] = [];
  const times: number[] = [];
  let acceptedAt = -1;
  let accepted: ByteStream | undefined;
  const listener = await server.runtime.listenStream({ port: 80 }, (stream) => {
    acceptedAt = net.now;
    accepted = stream;
    stream.onData((chunk) => {
      received.push(chunk);
      times.push(net.now);
    });
    stream.write(new TextEncoder().encode('hello'));
  });
  assert.deepEqual(listener.local, { host: server.address, port: 80 });
  const connecting = client.runtime.connectStream({ host: server.address, port: 80 });
  net.engine.runUntilIdle();
  const stream = await connecting;
  assert.equal(acceptedAt, 20);
  assert.equal(net.now, 40);
  assert.deepEqual(stream.remote, { host: server.address, port: 80 });
  assert.deepEqual(accepted?.remote, stream.local);
  let greeting = '';
  stream.onData((chunk) => (greeting += new TextDecoder().decode(chunk))); // buffered until now
  const expected: number[] = [];
  for (let i = 0; i < 200; i++) {
    const chunk = Uint8Array.from({ length: 1 + (i % 37) }, (_, k) => (i + k) & 0xff);
    expected.push(...chunk);
    stream.write(chunk);
  }
  net.engine.runUntilIdle();
  assert.equal(greeting, 'hello');
  assert.deepEqual([...concat(received)], expected);
  assert.ok(times.every((t) => t === 60));
});

test('streams: ordering holds even when the latency varies per segment', async () => {
  const jitter = new SimNetwork({ seed: 11 }).random.fork('jitter');
  const net2 = new SimNetwork({ seed: 11, latencyMs: () => 5 + jitter.below(50) });
  const s = net2.addHost();
  const c = net2.addHost();
  const got: number[] = [];
  await s.runtime.listenStream({ port: 1 }, (stream) => stream.onData((d) => got.push(...d)));
  const p = c.runtime.connectStream({ host: s.address, port: 1 });
  net2.engine.runUntilIdle();
  const stream = await p;
  for (let i = 0; i < 500; i++) stream.write(bytesOf(i & 0xff));
  net2.engine.runUntilIdle();
  assert.deepEqual(got, Array.from({ length: 500 }, (_, i) => i & 0xff));
});

test('streams: a connection to a port nobody listens on is refused after the round trip', async () => {
  const net = new SimNetwork({ latencyMs: 30 });
  const a = net.addHost();
  const b = net.addHost();
  let rejectedAt = -1;
  const outcome = a.runtime.connectStream({ host: b.address, port: 4242 }).then(
    () => undefined,
    (error: unknown) => {
      rejectedAt = net.now;
      return error;
    },
  );
  await net.engine.runAsync();
  assert.equal(((await outcome) as { code?: string }).code, 'ECONNREFUSED');
  assert.equal(rejectedAt, 60);
  assert.equal(net.stats.connectionsRefused, 1);
});

test('streams: a connection to no host at all times out when asked to', async () => {
  const net = new SimNetwork({ latencyMs: 30 });
  const a = net.addHost();
  const outcome = a.runtime.connectStream({ host: '10.200.0.1', port: 1 }, { timeoutMs: 1000 }).then(
    () => undefined,
    (error: unknown) => error,
  );
  await net.engine.runAsync();
  const error = await outcome;
  assert.ok(error instanceof SimNetError && error.code === 'ETIMEDOUT');
  assert.equal(net.now, 1000);
});

test('streams: end() propagates after the latency and both sides close once', async () => {
  const net = new SimNetwork({ latencyMs: 10 });
  const s = net.addHost();
  const c = net.addHost();
  const log: string[] = [];
  await s.runtime.listenStream({ port: 7 }, (stream) => {
    stream.onData((d) => {
      log.push(`server data ${d.length} @${net.now}`);
      stream.write(d); // echo
    });
    stream.onClose((error) => log.push(`server close ${String(error)} @${net.now}`));
  });
  const run = (async () => {
    const stream = await c.runtime.connectStream({ host: s.address, port: 7 });
    stream.onData((d) => log.push(`client data ${d.length} @${net.now}`));
    stream.onClose((error) => log.push(`client close ${String(error)} @${net.now}`));
    stream.write(new Uint8Array(100));
    stream.end();
    assert.equal(stream.write(new Uint8Array(1)), false); // writes after end are ignored
  })();
  await net.engine.runAsync();
  await run;
  assert.deepEqual(log, [
    'server data 100 @30',
    'server close undefined @30',
    'client data 100 @40',
    'client close undefined @40',
  ]);
});

test('streams: destroy() closes at once; data sent to a closed side resets the sender', async () => {
  const net = new SimNetwork({ latencyMs: 10 });
  const s = net.addHost();
  const c = net.addHost();
  const log: string[] = [];
  let serverSide: ByteStream | undefined;
  await s.runtime.listenStream({ port: 7 }, (stream) => {
    serverSide = stream;
    stream.onClose((error) => log.push(`server close ${(error as { code?: string } | undefined)?.code} @${net.now}`));
  });
  const p = c.runtime.connectStream({ host: s.address, port: 7 });
  net.engine.runUntilIdle();
  const stream = await p;
  stream.onClose((error) => log.push(`client close ${String(error)} @${net.now}`));
  stream.destroy();
  assert.deepEqual(log, ['client close undefined @20']);
  serverSide!.write(new Uint8Array(10)); // crosses the FIN on the way
  net.engine.runUntilIdle();
  // The FIN arrives at 30 and closes the server cleanly; the reset that its
  // data provoked finds it already closed.
  assert.deepEqual(log, ['client close undefined @20', 'server close undefined @30']);
  let lateClose: Error | undefined | null = null;
  stream.onClose((error) => (lateClose = error)); // registered after the fact: still called once
  net.engine.runUntilIdle();
  assert.equal(lateClose, undefined);
});

test('streams: writing to a peer that vanished ends with ECONNRESET', async () => {
  const net = new SimNetwork({ latencyMs: 10 });
  const s = net.addHost();
  const c = net.addHost();
  await s.runtime.listenStream({ port: 7 }, (stream) => {
    stream.onData(() => {});
  });
  const p = c.runtime.connectStream({ host: s.address, port: 7 });
  net.engine.runUntilIdle();
  const stream = await p;
  let closeError: Error | undefined;
  stream.onClose((error) => (closeError = error));
  net.removeHost(s);
  net.engine.runUntilIdle();
  assert.equal((closeError as unknown as { code: string }).code, 'ECONNRESET');
});

test('streams: backpressure: write() returns false at the high-water mark and onDrain follows', async () => {
  const hwm = 16 * 1024;
  const net = new SimNetwork({ latencyMs: 5, streamHighWaterMark: hwm });
  const s = net.addHost();
  const c = net.addHost();
  const total = 1024 * 1024 + 123;
  const source = net.random.fork('payload').bytes(total);
  const received: Uint8Array[] = [];
  let serverClosed = false;
  await s.runtime.listenStream({ port: 9 }, (stream) => {
    stream.onData((d) => received.push(d));
    stream.onClose(() => (serverClosed = true));
  });
  const p = c.runtime.connectStream({ host: s.address, port: 9 });
  net.engine.runUntilIdle();
  const stream = await p;
  let offset = 0;
  let stalls = 0;
  const pump = (): void => {
    while (offset < total) {
      const chunk = source.subarray(offset, Math.min(total, offset + 4096));
      offset += chunk.length;
      if (!stream.write(chunk)) {
        stalls++;
        return;
      }
    }
    stream.end();
  };
  stream.onDrain(pump);
  pump();
  net.engine.runUntilIdle();
  assert.ok(stalls >= Math.floor(total / hwm) - 1, `only ${stalls} stalls`);
  assert.deepEqual(concat(received), source);
  assert.ok(serverClosed);
});

test('crash: in-flight datagrams are dropped, timers stop, streams of the peer are reset', async () => {
  const net = new SimNetwork({ latencyMs: 10 });
  const a = net.addHost();
  const b = net.addHost();
  const sa = await a.runtime.bindDatagram();
  const sb = await b.runtime.bindDatagram();
  let got = 0;
  sb.onMessage(() => got++);
  let timerFired = false;
  b.runtime.timers.at(100, () => (timerFired = true));
  sa.send(sb.local, bytesOf(1));
  net.engine.schedule(5, () => b.crash());
  net.engine.runUntilIdle();
  assert.equal(got, 0);
  assert.equal(timerFired, false);
  assert.equal(b.alive, false);
  assert.equal(net.stats.datagramsUnroutable, 1);
  await assert.rejects(b.runtime.bindDatagram(), { code: 'EHOSTDOWN' });
});

/** A lossy, jittery ping-pong between several hosts; returns the delivery log. */
async function pingPongLog(seed: number): Promise<string[]> {
  const jitter = seededRandom(seed).fork('jitter');
  const net = new SimNetwork({ seed, loss: 0.1, latencyMs: (): number => 10 + jitter.below(40) });
  const hosts = [net.addHost(), net.addHost(), net.addHost(), net.addHost()];
  const sockets = await Promise.all(hosts.map((h) => h.runtime.bindDatagram({ port: 1000 })));
  const log: string[] = [];
  sockets.forEach((socket, i) => {
    const random = hosts[i]!.runtime.random;
    socket.onMessage((from: Endpoint, data: Uint8Array) => {
      log.push(`${net.now} ${from.host}->${socket.local.host} ${data[0]}`);
      const hop = data[0]!;
      if (hop < 30) socket.send({ host: hosts[random.below(hosts.length)]!.address, port: 1000 }, bytesOf(hop + 1));
    });
  });
  for (let i = 0; i < 16; i++) sockets[i % 4]!.send({ host: hosts[(i + 1) % 4]!.address, port: 1000 }, bytesOf(0));
  net.engine.runUntilIdle();
  return log;
}

test('determinism: same seed, identical network trace; different seed, different trace', async () => {
  const a = await pingPongLog(2024);
  const b = await pingPongLog(2024);
  const c = await pingPongLog(2025);
  assert.ok(a.length > 20);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test('streams: a paused reader pushes back on the writer until it resumes', async () => {
  const hwm = 8 * 1024;
  const net = new SimNetwork({ latencyMs: 5, streamHighWaterMark: hwm });
  const s = net.addHost();
  const c = net.addHost();
  let serverSide: ByteStream | undefined;
  let received = 0;
  await s.runtime.listenStream({ port: 9 }, (stream) => {
    serverSide = stream;
    stream.pause();
    stream.onData((d) => (received += d.length));
  });
  const p = c.runtime.connectStream({ host: s.address, port: 9 });
  net.engine.runUntilIdle();
  const stream = await p;
  let drains = 0;
  stream.onDrain(() => drains++);
  let written = 0;
  while (stream.write(new Uint8Array(1000))) written += 1000;
  written += 1000;
  assert.ok(written >= hwm && written < hwm + 1000);
  net.engine.runUntilIdle();
  assert.equal(received, 0); // paused: everything waits at the reader
  assert.equal(drains, 0); // and the writer is not told to go on
  serverSide!.resume();
  net.engine.runUntilIdle();
  assert.equal(received, written);
  assert.equal(drains, 1);
  serverSide!.pause();
  stream.write(new Uint8Array(10));
  net.engine.runUntilIdle();
  assert.equal(received, written);
  serverSide!.resume();
  net.engine.runUntilIdle();
  assert.equal(received, written + 10);
});
