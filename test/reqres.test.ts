import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { DatagramSocket, Endpoint, Random, Runtime, Transmit } from '../src/runtime/contract.js';
import { ReqResEndpoint, type ReqResEvent, type ReqResOptions } from '../src/core/reqres/index.js';
import { MAX_PAYLOAD, decodeMessage, encodeMessage } from '../src/core/reqres/wire.js';
import { driveDatagramCore } from '../src/runtime/drive.js';
import { createRealRuntime } from '../src/runtime/real/runtime.js';
import { SimNetwork, seededRandom } from '../src/runtime/sim/index.js';

const CLIENT: Endpoint = { host: '10.0.0.1', port: 4000 };
const SERVER: Endpoint = { host: '10.0.0.2', port: 5000 };
const enc = new TextEncoder();
const dec = new TextDecoder();

function transmits(core: ReqResEndpoint): Transmit[] {
  const out: Transmit[] = [];
  for (let t = core.pollTransmit(); t !== undefined; t = core.pollTransmit()) out.push(t);
  return out;
}

function events(core: ReqResEndpoint): ReqResEvent[] {
  const out: ReqResEvent[] = [];
  for (let e = core.pollEvent(); e !== undefined; e = core.pollEvent()) out.push(e);
  return out;
}

function client(options: Partial<ReqResOptions> = {}): ReqResEndpoint {
  return new ReqResEndpoint({ random: seededRandom('client'), ...options });
}

/** A server that answers "re:<request>" and counts responder calls. */
function server(options: Partial<ReqResOptions> = {}): { core: ReqResEndpoint; calls: () => number } {
  let calls = 0;
  const core = new ReqResEndpoint({
    random: seededRandom('server'),
    responder: (request) => {
      calls++;
      return enc.encode(`re:${dec.decode(request)}`);
    },
    ...options,
  });
  return { core, calls: () => calls };
}

test('wire: encode/decode round trip, strict decoding', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('request' as const, 'response' as const),
      fc.integer({ min: 0, max: 0xffff_ffff }),
      fc.uint8Array({ maxLength: MAX_PAYLOAD }),
      (kind, id, payload) => {
        const bytes = encodeMessage({ kind, id, payload });
        const decoded = decodeMessage(bytes);
        assert.ok(decoded.ok);
        assert.equal(decoded.message.kind, kind);
        assert.equal(decoded.message.id, id);
        assert.deepEqual(decoded.message.payload, payload);
      },
    ),
  );
  assert.equal(decodeMessage(new Uint8Array(0)).ok, false);
  assert.equal(decodeMessage(Uint8Array.from([1, 0, 0, 0])).ok, false);
  assert.equal(decodeMessage(Uint8Array.from([3, 0, 0, 0, 1])).ok, false);
  assert.equal(decodeMessage(Uint8Array.from([0, 0, 0, 0, 1])).ok, false);
  assert.equal(decodeMessage(new Uint8Array(5 + MAX_PAYLOAD + 1).fill(1)).ok, false);
  assert.throws(() => encodeMessage({ kind: 'request', id: -1, payload: new Uint8Array(0) }), RangeError);
  assert.throws(() => encodeMessage({ kind: 'request', id: 2 ** 32, payload: new Uint8Array(0) }), RangeError);
  assert.throws(() => encodeMessage({ kind: 'request', id: 1, payload: new Uint8Array(MAX_PAYLOAD + 1) }), RangeError);
});

test('client: retransmits with exponential backoff, then times out after maxAttempts', () => {
  const c = client({ retransmitMs: 100, maxAttempts: 4 });
  assert.equal(c.pollTimeout(), undefined);
  const id = c.request(0, SERVER, enc.encode('ping'));
  const first = transmits(c);
  assert.equal(first.length, 1);
  assert.deepEqual(first[0]!.to, SERVER);
  const sendTimes = [0];
  for (const expectedDeadline of [100, 300, 700]) {
    assert.equal(c.pollTimeout(), expectedDeadline);
    c.handleTimeout(expectedDeadline - 1); // too early: nothing happens
    assert.equal(transmits(c).length, 0);
    const now = expectedDeadline;
    c.handleTimeout(now);
    const again = transmits(c);
    assert.equal(again.length, 1);
    assert.deepEqual(again[0]!.data, first[0]!.data); // the very same request
    sendTimes.push(now);
  }
  assert.deepEqual(sendTimes, [0, 100, 300, 700]);
  assert.equal(c.pollTimeout(), 1500);
  assert.deepEqual(events(c), []);
  c.handleTimeout(1500);
  assert.deepEqual(transmits(c), []);
  assert.deepEqual(events(c), [{ type: 'timeout', id, attempts: 4 }]);
  assert.equal(c.pollTimeout(), undefined);
  assert.equal(c.inFlight, 0);
  assert.equal(c.stats.retransmissions, 3);
  assert.equal(c.stats.timeouts, 1);
});

test('client: backoff factor and the cap on one timeout are honoured', () => {
  const c = client({ retransmitMs: 100, backoff: 3, maxRetransmitMs: 500, maxAttempts: 5 });
  c.request(1000, SERVER, new Uint8Array(0));
  const deadlines: number[] = [];
  for (let d = c.pollTimeout(); d !== undefined; d = c.pollTimeout()) {
    deadlines.push(d);
    c.handleTimeout(d);
  }
  assert.deepEqual(deadlines, [1100, 1400, 1900, 2400, 2900]);
});

test('request/response between two cores: rtt, attempts, and rtt measured from the last transmission', () => {
  const c = client({ retransmitMs: 100 });
  const { core: s } = server();
  const id = c.request(0, SERVER, enc.encode('hello'));
  const [req] = transmits(c);
  s.handleDatagram(20, CLIENT, req!.data);
  const [resp] = transmits(s);
  assert.deepEqual(resp!.to, CLIENT);
  c.handleDatagram(40, SERVER, resp!.data);
  const [ev] = events(c);
  assert.ok(ev !== undefined && ev.type === 'response');
  assert.equal(ev.id, id);
  assert.equal(dec.decode(ev.payload), 're:hello');
  assert.equal(ev.rtt, 40);
  assert.equal(ev.elapsed, 40);
  assert.equal(ev.attempts, 1);
  assert.equal(c.pollTimeout(), undefined);

  // The first transmission is lost; the retransmission at 100 is answered at 150.
  const id2 = c.request(0 + 1000, SERVER, enc.encode('again'));
  transmits(c);
  c.handleTimeout(1100);
  const [retry] = transmits(c);
  s.handleDatagram(1125, CLIENT, retry!.data);
  c.handleDatagram(1150, SERVER, transmits(s)[0]!.data);
  assert.deepEqual(
    events(c).map((e) => (e.type === 'response' ? { id: e.id, rtt: e.rtt, elapsed: e.elapsed, attempts: e.attempts } : e)),
    [{ id: id2, rtt: 50, elapsed: 150, attempts: 2 }],
  );
});

test('client ignores responses from the wrong address, for unknown ids, and duplicates', () => {
  const c = client();
  const { core: s } = server();
  const id = c.request(0, SERVER, enc.encode('x'));
  s.handleDatagram(1, CLIENT, transmits(c)[0]!.data);
  const response = transmits(s)[0]!.data;
  c.handleDatagram(2, { host: '10.0.0.66', port: SERVER.port }, response);
  c.handleDatagram(2, { host: SERVER.host, port: SERVER.port + 1 }, response);
  assert.equal(c.stats.wrongSourceResponses, 2);
  c.handleDatagram(3, SERVER, encodeMessage({ kind: 'response', id: (id + 1) >>> 0, payload: new Uint8Array(0) }));
  assert.equal(c.stats.unknownResponses, 1);
  assert.deepEqual(events(c), []);
  assert.equal(c.inFlight, 1);
  c.handleDatagram(4, SERVER, response);
  c.handleDatagram(5, SERVER, response); // a duplicate answer after completion
  assert.equal(events(c).length, 1);
  assert.equal(c.stats.unknownResponses, 2);
  assert.equal(c.cancel(id), false);
});

test('cancel() forgets a request without an event', () => {
  const c = client();
  const id = c.request(0, SERVER, new Uint8Array(1));
  assert.equal(c.cancel(id), true);
  assert.equal(c.pollTimeout(), undefined);
  c.handleTimeout(10_000);
  assert.deepEqual(events(c), []);
});

test('transaction ids come from the injected Random and are never reused while in flight', () => {
  const values = [5, 5, 5, 7, 5, 9];
  const random: Random = { u32: () => values.shift() ?? 11, float: () => 0, below: () => 0, bytes: (n) => new Uint8Array(n) };
  const c = new ReqResEndpoint({ random });
  const ids = [c.request(0, SERVER, new Uint8Array(0)), c.request(0, SERVER, new Uint8Array(0)), c.request(0, SERVER, new Uint8Array(0))];
  assert.deepEqual(ids, [5, 7, 9]);
  assert.throws(() => c.request(0, SERVER, new Uint8Array(MAX_PAYLOAD + 1)), RangeError);
});

test('server: at-most-once within the dedup window, the same answer to retransmissions', () => {
  const { core: s, calls } = server({ dedupWindowMs: 1000 });
  const request = encodeMessage({ kind: 'request', id: 42, payload: enc.encode('work') });
  s.handleDatagram(0, CLIENT, request);
  s.handleDatagram(300, CLIENT, request);
  s.handleDatagram(999, CLIENT, request);
  const answers = transmits(s);
  assert.equal(answers.length, 3);
  assert.equal(calls(), 1);
  for (const a of answers) assert.deepEqual(a.data, answers[0]!.data);
  assert.equal(s.stats.duplicateRequests, 2);
  // Same id from another client is another transaction.
  s.handleDatagram(1000 - 1, { host: CLIENT.host, port: CLIENT.port + 1 }, request);
  assert.equal(calls(), 2);
  // After the window the answer is forgotten.
  s.handleDatagram(1000, CLIENT, request);
  assert.equal(calls(), 3);
  assert.equal(s.pollTimeout(), undefined); // the server never needs a timer
});

test('server: the answer cache is bounded, oldest evicted first', () => {
  const { core: s, calls } = server({ maxCachedResponses: 3 });
  for (let id = 1; id <= 5; id++) s.handleDatagram(id, CLIENT, encodeMessage({ kind: 'request', id, payload: new Uint8Array(0) }));
  assert.equal(s.cachedResponses, 3);
  assert.equal(s.stats.cacheEvictions, 2);
  s.handleDatagram(10, CLIENT, encodeMessage({ kind: 'request', id: 5, payload: new Uint8Array(0) }));
  assert.equal(calls(), 5); // 5 is still cached
  s.handleDatagram(11, CLIENT, encodeMessage({ kind: 'request', id: 1, payload: new Uint8Array(0) }));
  assert.equal(calls(), 6); // 1 was evicted
  const noResponder = client();
  noResponder.handleDatagram(0, CLIENT, encodeMessage({ kind: 'request', id: 1, payload: new Uint8Array(0) }));
  assert.equal(noResponder.stats.unhandledRequests, 1);
  assert.deepEqual(transmits(noResponder), []);
});

test('malformed input is counted and dropped, never thrown', () => {
  const { core: s } = server();
  const bad = [new Uint8Array(0), Uint8Array.from([1]), Uint8Array.from([1, 0, 0, 0]), Uint8Array.from([9, 0, 0, 0, 0]), new Uint8Array(2000).fill(1)];
  for (const b of bad) s.handleDatagram(0, CLIENT, b);
  assert.equal(s.stats.malformed, bad.length);
  assert.deepEqual(transmits(s), []);
  assert.deepEqual(events(s), []);
});

test('fuzz: random datagrams never make either role throw', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          at: fc.integer({ min: 0, max: 100_000 }),
          data: fc.oneof(
            fc.uint8Array({ maxLength: 1300 }),
            fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffff_ffff }), fc.uint8Array({ maxLength: 1250 })).map(
              ([type, id, payload]) => {
                const out = new Uint8Array(5 + payload.length);
                out[0] = type;
                new DataView(out.buffer).setUint32(1, id);
                out.set(payload, 5);
                return out;
              },
            ),
          ),
        }),
        { maxLength: 50 },
      ),
      (inputs) => {
        const c = client({ retransmitMs: 50 });
        const { core: s } = server();
        c.request(0, SERVER, new Uint8Array(3));
        let now = 0;
        for (const { at, data } of inputs) {
          now = Math.max(now, at);
          c.handleDatagram(now, SERVER, data);
          s.handleDatagram(now, CLIENT, data);
          const deadline = c.pollTimeout();
          if (deadline !== undefined && deadline <= now) c.handleTimeout(now);
          transmits(c);
          transmits(s);
          events(c);
        }
        const st = s.stats;
        assert.equal(st.malformed + st.requestsAnswered + st.duplicateRequests + st.unknownResponses + st.wrongSourceResponses, inputs.length);
      },
    ),
    { numRuns: 300 },
  );
});

test('options are validated', () => {
  const random = seededRandom(0);
  assert.throws(() => new ReqResEndpoint({ random, retransmitMs: 0 }), RangeError);
  assert.throws(() => new ReqResEndpoint({ random, backoff: 0.5 }), RangeError);
  assert.throws(() => new ReqResEndpoint({ random, maxAttempts: 0 }), RangeError);
  assert.throws(() => new ReqResEndpoint({ random, maxAttempts: 1.5 }), RangeError);
  assert.throws(() => new ReqResEndpoint({ random, dedupWindowMs: -1 }), RangeError);
});

// --- The same core and driver on the real runtime ---------------------------------

interface Peer {
  core: ReqResEndpoint;
  socket: DatagramSocket;
  stop: () => void;
  poke: () => void;
}

async function peer(runtime: Runtime, options: Partial<ReqResOptions>, onEvent: (event: ReqResEvent) => void, port?: number): Promise<Peer> {
  const socket = await runtime.bindDatagram(port === undefined ? {} : { port });
  const core = new ReqResEndpoint({ random: runtime.random, ...options });
  const handle = driveDatagramCore(runtime, socket, core, onEvent, { closeSocketOnStop: true });
  return { core, socket, stop: () => handle.stop(), poke: () => handle.poke() };
}

test('real runtime: 50 requests between two endpoints over 127.0.0.1 are all answered', { timeout: 10_000 }, async () => {
  const rt = createRealRuntime();
  const srv = await peer(rt, { responder: (req) => enc.encode(`re:${dec.decode(req)}`) }, () => {});
  const answers = new Map<number, string>();
  let finish!: () => void;
  const allDone = new Promise<void>((resolve) => (finish = resolve));
  const sent = new Map<number, string>();
  const cli = await peer(rt, { retransmitMs: 200, maxAttempts: 5 }, (event) => {
    assert.equal(event.type, 'response');
    if (event.type !== 'response') return;
    answers.set(event.id, dec.decode(event.payload));
    assert.ok(event.rtt >= 0 && event.attempts >= 1);
    if (answers.size === 50) finish();
  });
  try {
    for (let i = 0; i < 50; i++) {
      const id = cli.core.request(rt.clock.now(), srv.socket.local, enc.encode(`q${i}`));
      sent.set(id, `q${i}`);
    }
    cli.poke();
    await allDone;
    for (const [id, q] of sent) assert.equal(answers.get(id), `re:${q}`);
    assert.equal(srv.core.stats.requestsAnswered, 50);
    assert.equal(cli.core.inFlight, 0);
  } finally {
    cli.stop();
    srv.stop();
  }
});

test('real runtime: a request to a closed port times out after maxAttempts', { timeout: 10_000 }, async () => {
  const rt = createRealRuntime();
  const closed = await rt.bindDatagram();
  const target = closed.local;
  closed.close();
  let resolveEvent!: (e: ReqResEvent) => void;
  const outcome = new Promise<ReqResEvent>((resolve) => (resolveEvent = resolve));
  const cli = await peer(rt, { retransmitMs: 20, maxAttempts: 4 }, (event) => resolveEvent(event));
  try {
    const start = rt.clock.now();
    const id = cli.core.request(start, target, enc.encode('anyone?'));
    cli.poke();
    const event = await outcome;
    assert.deepEqual(event, { type: 'timeout', id, attempts: 4 });
    assert.ok(rt.clock.now() - start >= 20 * (1 + 2 + 4 + 8)); // the timers never fire early
    assert.equal(cli.core.stats.retransmissions, 3);
  } finally {
    cli.stop();
  }
});

// --- The same core and driver in the simulator ------------------------------------

interface SimRun {
  log: string[];
  responses: Extract<ReqResEvent, { type: 'response' }>[];
  timeouts: number;
  lost: number;
  duplicates: number;
}

async function simulate(seed: number, requests = 200): Promise<SimRun> {
  const net = new SimNetwork({ seed, latencyMs: 50, loss: 0.2 });
  const serverHost = net.addHost();
  const clientHost = net.addHost();
  const log: string[] = [];
  const responses: SimRun['responses'] = [];
  let timeouts = 0;
  const srv = await peer(serverHost.runtime, { responder: (req, from) => enc.encode(`${from.host}:${dec.decode(req)}`) }, () => {}, 53);
  const cli = await peer(clientHost.runtime, { retransmitMs: 500, maxAttempts: 12 }, (event) => {
    if (event.type === 'response') {
      responses.push(event);
      log.push(`${net.now} response ${event.id} rtt=${event.rtt} attempts=${event.attempts} ${dec.decode(event.payload)}`);
    } else {
      timeouts++;
      log.push(`${net.now} timeout ${event.id}`);
    }
  });
  for (let i = 0; i < requests; i++) {
    net.engine.schedule(i * 7, () => {
      const id = cli.core.request(net.now, srv.socket.local, enc.encode(`q${i}`));
      log.push(`${net.now} request ${id} q${i}`);
      cli.poke();
    });
  }
  net.engine.runUntilIdle();
  srv.stop();
  cli.stop();
  return { log, responses, timeouts, lost: net.stats.datagramsLost, duplicates: srv.core.stats.duplicateRequests };
}

test('simulator: 20 % loss, 50 ms latency: every request completes, RTTs match the latency model', async () => {
  const run = await simulate(42);
  assert.equal(run.timeouts, 0);
  assert.equal(run.responses.length, 200);
  assert.ok(run.lost > 0, 'the loss model dropped nothing');
  assert.ok(run.duplicates > 0, 'no retransmitted request reached the server twice');
  assert.ok(run.responses.some((r) => r.attempts > 1));
  // Latency is 50 ms each way and the first timeout (500 ms) exceeds the round
  // trip, so every response answers the last transmission.
  for (const r of run.responses) {
    assert.equal(r.rtt, 100);
    // elapsed = the timeouts waited (500, 1000, 2000, ...) + one round trip
    let waited = 0;
    for (let k = 1; k < r.attempts; k++) waited += 500 * 2 ** (k - 1);
    assert.equal(r.elapsed, waited + 100);
    assert.match(dec.decode(r.payload), /^10\.0\.0\.2:q\d+$/);
  }
});

test('simulator: same seed, identical event log; different seed, different log', async () => {
  const a = await simulate(7, 100);
  const b = await simulate(7, 100);
  const c = await simulate(8, 100);
  assert.ok(a.log.length >= 200);
  assert.deepEqual(a.log, b.log);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.log, c.log);
});

test('driver: handles many timers and inputs without recursion, and stop() silences it', async () => {
  const net = new SimNetwork({ seed: 1, latencyMs: 1 });
  const h1 = net.addHost();
  const h2 = net.addHost();
  let answered = 0;
  const srv = await peer(h2.runtime, { responder: (req) => req }, () => {}, 7);
  // Every response immediately triggers the next request from inside onEvent.
  const cli = await peer(h1.runtime, {}, (event) => {
    if (event.type === 'response' && ++answered < 5000) cli.core.request(net.now, srv.socket.local, new Uint8Array(4));
  });
  cli.core.request(0, srv.socket.local, new Uint8Array(4));
  cli.poke();
  net.engine.runUntilIdle();
  assert.equal(answered, 5000);
  cli.core.request(net.now, srv.socket.local, new Uint8Array(4));
  cli.stop();
  cli.poke(); // no effect after stop
  net.engine.runUntilIdle();
  assert.equal(answered, 5000);
  assert.equal(net.engine.pendingEvents, 0);
  srv.stop();
});
