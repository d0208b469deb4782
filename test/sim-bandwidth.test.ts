import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ByteStream } from '../src/runtime/contract.js';
import { SimNetwork, type SimHost } from '../src/runtime/sim/index.js';
import { maxMinFair } from '../src/runtime/sim/bandwidth.js';
import {
  constantLatency,
  geographicLatency,
  matrixLatency,
  parseLatencyMatrix,
  uniformLatency,
  hashUnit,
  LatencyMatrixError,
} from '../src/runtime/sim/latency.js';

const close = (a: number, b: number, eps = 1e-9): boolean => Math.abs(a - b) <= eps * Math.max(1, Math.abs(a), Math.abs(b));

test('max-min fair: one sender shared equally by three unconstrained receivers', () => {
  // Resources: 0 = sender up (10), 1..3 = receivers down (unlimited).
  const r = maxMinFair([0, 0, 0], [1, 2, 3], [10, Infinity, Infinity, Infinity]);
  assert.deepEqual([...r], [10 / 3, 10 / 3, 10 / 3]);
});

test('max-min fair: a slow receiver takes its 2, the other two share the remaining 8', () => {
  const r = maxMinFair([0, 0, 0], [1, 2, 3], [10, 2, Infinity, Infinity]);
  assert.deepEqual([...r], [2, 4, 4]);
});

test('max-min fair: two senders and a shared receiver (hand computed)', () => {
  // A (up 6) -> X, A -> Y, B (up 4) -> X; X down 5, Y unlimited.
  // X is the first bottleneck: 5 / 2 = 2.5 each for A->X and B->X; A has 3.5 left for A->Y.
  const A = 0, B = 1, X = 2, Y = 3;
  const r = maxMinFair([A, A, B], [X, Y, X], [6, 4, 5, Infinity]);
  assert.deepEqual([...r], [2.5, 3.5, 2.5]);
});

test('max-min fair: flows with only unlimited resources get Infinity; a zero flow set is fine', () => {
  assert.deepEqual([...maxMinFair([0], [1], [Infinity, Infinity])], [Infinity]);
  assert.deepEqual([...maxMinFair([], [], [1, 2])], []);
});

test('property: max-min fair allocations are feasible and every flow has a bottleneck', () => {
  const instance = fc
    .record({ hosts: fc.integer({ min: 2, max: 8 }), caps: fc.array(fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.constant(Infinity)), { minLength: 16, maxLength: 16 }) })
    .chain(({ hosts, caps }) =>
      fc.record({
        hosts: fc.constant(hosts),
        caps: fc.constant(caps.slice(0, 2 * hosts)),
        flows: fc.array(fc.tuple(fc.nat(hosts - 1), fc.nat(hosts - 1)).filter(([a, b]) => a !== b), { maxLength: 30 }),
      }),
    );
  fc.assert(
    fc.property(instance, ({ caps, flows }) => {
      // Host h: resource 2h is its upload, 2h+1 its download.
      const up = flows.map(([a]) => 2 * a);
      const down = flows.map(([, b]) => 2 * b + 1);
      const rate = maxMinFair(up, down, caps);
      const used = new Array<number>(caps.length).fill(0);
      flows.forEach((_, i) => {
        assert.ok(rate[i]! >= 0);
        used[up[i]!] = used[up[i]!]! + rate[i]!;
        used[down[i]!] = used[down[i]!]! + rate[i]!;
      });
      caps.forEach((c, k) => assert.ok(used[k]! <= c * (1 + 1e-9) + 1e-9, `resource ${k} over capacity`));
      // Bottleneck: a saturated resource of the flow on which no flow has more.
      flows.forEach((_, i) => {
        if (rate[i] === Infinity) {
          assert.ok(caps[up[i]!] === Infinity && caps[down[i]!] === Infinity);
          return;
        }
        const ok = [up[i]!, down[i]!].some((k) => {
          if (!close(used[k]!, caps[k]!, 1e-9)) return false;
          return flows.every((__, j) => (up[j] !== k && down[j] !== k) || rate[j]! <= rate[i]! * (1 + 1e-9) + 1e-12);
        });
        assert.ok(ok, `flow ${i} has no bottleneck`);
      });
    }),
    { numRuns: 300 },
  );
});

function pair(net: SimNetwork, server: SimHost, client: SimHost, port: number): { out: ByteStream; inbound: () => ByteStream } {
  let accepted: ByteStream | undefined;
  server.listen({ port }, (s) => (accepted = s));
  let out: ByteStream | undefined;
  client.connect({ host: server.address, port }, {}, (e, s) => {
    assert.equal(e, undefined);
    out = s;
  });
  net.engine.run({ until: net.now + 1000 });
  assert.ok(out && accepted);
  return { out, inbound: () => accepted! };
}

test('streams share a sender\'s upload max-min fairly; a finished flow frees its share', () => {
  const net = new SimNetwork({ latencyMs: 10, streamHighWaterMark: 1 << 24 });
  const sender = net.addHost({ uploadBps: 1_000_000 }); // 1000 bytes/ms
  const r1 = net.addHost();
  const r2 = net.addHost();
  const a = pair(net, r1, sender, 1);
  const b = pair(net, r2, sender, 1);
  const t0 = net.now;
  const doneAt: number[] = [];
  let got1 = 0;
  let got2 = 0;
  a.inbound().onData((d) => {
    got1 += d.length;
    if (got1 === 100_000) doneAt[0] = net.now - t0;
  });
  b.inbound().onData((d) => {
    got2 += d.length;
    if (got2 === 300_000) doneAt[1] = net.now - t0;
  });
  a.out.write(new Uint8Array(100_000));
  b.out.write(new Uint8Array(300_000));
  net.engine.runUntilIdle();
  // Both at 500 B/ms: the first is transmitted at 200 ms; the second then has
  // 200 000 bytes left at 1000 B/ms: 400 ms. Each arrives 10 ms later.
  assert.ok(close(doneAt[0]!, 210), `${doneAt[0]}`);
  assert.ok(close(doneAt[1]!, 410), `${doneAt[1]}`);
});

test('a transfer is limited by the slower of upload and download; writes keep their order', () => {
  const net = new SimNetwork({ latencyMs: 5, streamHighWaterMark: 1 << 24 });
  const fast = net.addHost({ uploadBps: 10_000_000 });
  const slow = net.addHost({ downloadBps: 100_000 }); // 100 B/ms
  const { out, inbound } = pair(net, slow, fast, 7);
  const t0 = net.now;
  const got: number[] = [];
  let lastAt = 0;
  inbound().onData((d) => {
    got.push(...d);
    lastAt = net.now - t0;
  });
  for (let i = 0; i < 10; i++) out.write(new Uint8Array(1000).fill(i));
  net.engine.runUntilIdle();
  assert.equal(got.length, 10_000);
  for (let i = 0; i < 10; i++) assert.equal(got[i * 1000], i);
  assert.ok(close(lastAt, 10_000 / 100 + 5), `${lastAt}`);
});

test('bandwidth: a destroyed stream frees its share at once', () => {
  const net = new SimNetwork({ latencyMs: 0, streamHighWaterMark: 1 << 24 });
  const s = net.addHost({ uploadBps: 1_000_000 });
  const r = net.addHost();
  const a = pair(net, r, s, 1);
  const b = pair(net, r, s, 2);
  const t0 = net.now;
  let doneAt = -1;
  let got = 0;
  b.inbound().onData((d) => {
    got += d.length;
    if (got === 200_000) doneAt = net.now - t0;
  });
  a.out.write(new Uint8Array(1_000_000));
  b.out.write(new Uint8Array(200_000));
  net.engine.schedule(t0 + 100, () => a.out.destroy()); // b had 50 000 at 500 B/ms; 150 000 left at 1000 B/ms
  net.engine.runUntilIdle();
  assert.ok(close(doneAt, 250), `${doneAt}`);
  assert.equal(net.flows.activeFlows.length, 0);
});

test('NAT: no unsolicited connections or datagrams; replies to what the host sent pass until the mapping expires', async () => {
  const net = new SimNetwork({ latencyMs: 10, natMappingMs: 1000 });
  const natted = net.addHost({ nat: true });
  const open = net.addHost();
  natted.listen({ port: 80 }, () => assert.fail('an unsolicited connection was accepted'));
  let result: string | undefined;
  open.connect({ host: natted.address, port: 80 }, { timeoutMs: 500 }, (e) => (result = (e as { code?: string } | undefined)?.code));
  let outbound = false;
  open.listen({ port: 80 }, () => (outbound = true));
  natted.connect({ host: open.address, port: 80 }, {}, (e) => assert.equal(e, undefined));
  net.engine.run({ until: 1000 });
  assert.equal(result, 'ETIMEDOUT');
  assert.equal(outbound, true);
  assert.equal(net.stats.connectionsFiltered, 1);

  const sn = await natted.runtime.bindDatagram({ port: 6881 });
  const so = await open.runtime.bindDatagram({ port: 6881 });
  const received: number[] = [];
  sn.onMessage((_from, d) => received.push(d[0]!));
  so.send(sn.local, Uint8Array.of(1)); // unsolicited: dropped
  net.engine.run({ until: net.now + 100 });
  sn.send(so.local, Uint8Array.of(0)); // opens the mapping
  net.engine.run({ until: net.now + 100 });
  so.send(sn.local, Uint8Array.of(2)); // a reply: passes
  net.engine.run({ until: net.now + 2000 });
  so.send(sn.local, Uint8Array.of(3)); // the mapping has expired
  net.engine.runUntilIdle();
  assert.deepEqual(received, [2]);
  assert.equal(net.stats.datagramsFiltered, 2);
});

test('latency models: constant, uniform (symmetric, in range, reproducible), matrix and geography', () => {
  const net = new SimNetwork();
  const hosts = Array.from({ length: 20 }, (_, i) => net.addHost({ region: i < 10 ? 'eu' : 'us' }));
  assert.equal(constantLatency(7)(hosts[0]!, hosts[1]!), 7);
  const u = uniformLatency(20, 80, 3);
  const u2 = uniformLatency(20, 80, 3);
  for (const a of hosts)
    for (const b of hosts) {
      const v = u(a, b);
      assert.ok(v >= 20 && v <= 80);
      assert.equal(v, u(b, a));
      assert.equal(v, u2(a, b));
    }
  assert.throws(() => uniformLatency(5, 1), RangeError);
  // The documented value, fixed across versions so that a seed keeps giving the same run: a hash of "low|high".
  for (const [a, b] of [[hosts[0]!, hosts[7]!], [hosts[12]!, hosts[3]!], [hosts[5]!, hosts[5]!]] as const) {
    const [lo, hi] = a.address < b.address ? [a.address, b.address] : [b.address, a.address];
    assert.equal(u(a, b), 20 + 60 * hashUnit(`${lo}|${hi}`, 3));
  }

  const m = parseLatencyMatrix(',eu,us\neu,5,40\nus,45,8\n');
  const ml = matrixLatency(m);
  assert.equal(ml(hosts[0]!, hosts[1]!), 5);
  assert.equal(ml(hosts[0]!, hosts[15]!), 40);
  assert.equal(ml(hosts[15]!, hosts[0]!), 45);
  assert.equal(ml(hosts[3]!, hosts[3]!), 0);
  assert.deepEqual(parseLatencyMatrix('{"sites":["a","b"],"ms":[[1,2],[3,4]]}').ms, [[1, 2], [3, 4]]);
  assert.throws(() => parseLatencyMatrix(',a,b\na,1,2\nb,3\n'), /row 1 \(b\) has 1 entries/);
  assert.throws(() => parseLatencyMatrix(',a\na,x\n'), LatencyMatrixError);
  assert.throws(() => parseLatencyMatrix('{"sites":["a"],"ms":[[-1]]}'), /finite number >= 0/);

  const geo = geographicLatency({
    regions: [
      { name: 'eu', center: [0, 0], radius: 5, accessMs: [2, 10] },
      { name: 'us', center: [80, 0], radius: 5, accessMs: [2, 10] },
    ],
  });
  // Within a region: at most 2 * 10 access + 10 of distance; across: at least 2 * 2 + 70.
  for (let i = 0; i < 10; i++)
    for (let j = 0; j < 10; j++) {
      if (i === j) continue;
      assert.ok(geo(hosts[i]!, hosts[j]!) <= 30);
      assert.ok(geo(hosts[i]!, hosts[10 + j]!) >= 74);
      assert.equal(geo(hosts[i]!, hosts[j]!), geo(hosts[j]!, hosts[i]!));
    }
  // Without a hint, hosts are spread over the regions by weight, reproducibly.
  const free = new SimNetwork();
  const placed = Array.from({ length: 200 }, () => geo.place(free.addHost()).region.name);
  const eu = placed.filter((r) => r === 'eu').length;
  assert.ok(eu > 60 && eu < 140, `${eu}`);
});

test('a network with a latency model delivers at the modelled latency', async () => {
  const net = new SimNetwork({ latencyMs: uniformLatency(10, 50, 9) });
  const a = net.addHost();
  const b = net.addHost();
  const sa = await a.runtime.bindDatagram();
  const sb = await b.runtime.bindDatagram();
  let at = -1;
  sb.onMessage(() => (at = net.now));
  sa.send(sb.local, Uint8Array.of(1));
  net.engine.runUntilIdle();
  assert.equal(at, net.latency(a, b));
  assert.ok(at >= 10 && at <= 50);
});

test('small messages may skip the fair share, keeping their order within the stream', () => {
  for (const small of [0, 1024]) {
    const net = new SimNetwork({ latencyMs: 1, streamHighWaterMark: 1 << 24, smallMessageBytes: small });
    const s = net.addHost({ uploadBps: 100_000 }); // 100 B/ms
    const r = net.addHost();
    const a = pair(net, r, s, 1);
    const got: number[] = [];
    a.inbound().onData((d) => got.push(...d.subarray(0, 1)));
    // Small, big, small, small, big, small: the receiver must see them in this order.
    const sizes = [10, 5000, 20, 1, 3000, 7];
    sizes.forEach((n, i) => a.out.write(new Uint8Array(n).fill(i + 1)));
    net.engine.runUntilIdle();
    // Each chunk's first byte (chunks may be split into segments, so dedupe runs).
    const order = got.filter((v, i) => i === 0 || v !== got[i - 1]);
    assert.deepEqual(order, [1, 2, 3, 4, 5, 6], `smallMessageBytes ${small}`);
    assert.equal(net.flows.activeFlows.length, 0);
  }
});
