/**
 * The UDP side of the tracker (BEP 15) on a runtime DatagramSocket: every
 * datagram goes to the shared core, its accounting is persisted, then the
 * core's reply (if any) is sent back on the same socket. The core drops
 * what it should not answer (forged connection ids, floods, junk), so a
 * spoofed source never gets more than a 16-byte connect reply.
 */
import type { DatagramSocket, Runtime } from '../runtime/contract.js';
import type { TrackerService } from './service.js';

export async function bindUdp(service: TrackerService, runtime: Runtime, host: string, port: number): Promise<DatagramSocket> {
  const socket = await runtime.bindDatagram({ host, port });
  serveUdp(service, socket);
  return socket;
}

/** Serves the tracker on a socket already bound (the simulator binds its sockets synchronously). */
export function serveUdp(service: TrackerService, socket: DatagramSocket): void {
  const core = service.core;
  socket.onMessage((from, data) => {
    try {
      core.handleDatagram(service.now(), from, data);
      service.afterInput();
      for (let t = core.pollTransmit(); t !== undefined; t = core.pollTransmit()) socket.send(t.to, t.data);
    } catch (error) {
      while (core.pollTransmit() !== undefined);
      service.fault(error);
    }
  });
}
