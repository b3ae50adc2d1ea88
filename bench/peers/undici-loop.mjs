// Peer: a bare undici.request loop, the ceiling for a Node client. argv: base url, count, concurrency.
import { Agent, request } from 'undici';
const [base, count, concurrency] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const dispatcher = new Agent({ connections: concurrency, pipelining: 1 });
let next = 0, ok = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < count) {
    const i = next++;
    const res = await request(`${base}?i=${i}`, { dispatcher });
    await res.body.dump({ limit: Infinity });
    if (res.statusCode === 200) ok++;
  }
}));
console.log(JSON.stringify({ requests: count, ok, seconds: (performance.now() - t0) / 1000 }));
await dispatcher.close();
