/**
 * A loopback server that answers with raw bytes, for responses node:http will not send: stacked
 * encodings, status 000, unsolicited 100 Continue, bodies cut mid-way, non-ASCII header bytes.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface RawRequest {
  method: string;
  path: string;
  /** How many requests for this path came before this one. */
  seen: number;
}

export interface RawOrigin {
  url: string;
  /** Request paths (as sent, percent-encoding kept) in arrival order. */
  paths: string[];
  close(): Promise<void>;
}

/**
 * Starts a raw origin on 127.0.0.1, port 0; `answer` writes the response for each request head.
 *
 * @example
 * const o = await startRawOrigin((s) => s.end('HTTP/1.1 000 X\r\ncontent-length: 0\r\n\r\n'));
 */
export async function startRawOrigin(answer: (socket: Socket, request: RawRequest) => void): Promise<RawOrigin> {
  const sockets = new Set<Socket>();
  const paths: string[] = [];
  const seen = new Map<string, number>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [method = '', path = ''] = head.subarray(0, head.indexOf('\r\n')).toString('latin1').split(' ');
      const lengthMatch = /\r\ncontent-length:\s*(\d+)/i.exec(head.subarray(0, end).toString('latin1'));
      const needed = end + 4 + (lengthMatch ? Number(lengthMatch[1]) : 0);
      if (head.length < needed) return;
      head = head.subarray(needed);
      paths.push(path);
      const n = seen.get(path) ?? 0;
      seen.set(path, n + 1);
      answer(socket, { method, path, seen: n });
    };
    socket.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    paths,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
